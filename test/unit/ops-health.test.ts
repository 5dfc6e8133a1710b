import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HealthState } from '../../src/ops/health.js';

function clocked(timeout = 1000, period = 60_000) {
  const clock = { t: 0 };
  return { clock, health: new HealthState(timeout, period, () => clock.t) };
}

test('not ready before the first full sync; ready after, and it stays', () => {
  const { clock, health } = clocked();
  assert.equal(health.ready, false);
  health.queued();
  clock.t = 100;
  health.synced(false, 50, false);
  assert.equal(health.ready, false, 'a partial sync does not make it ready');
  health.synced(true, 50, false);
  assert.equal(health.ready, true);
});

test('healthy while queued changes are applied within the bound; unhealthy past it; healthy again once applied', () => {
  const { clock, health } = clocked(1000);
  assert.equal(health.unhealthyReason(), null, 'nothing queued');
  health.queued();
  clock.t = 900;
  assert.equal(health.unhealthyReason(), null);
  clock.t = 1001;
  assert.match(health.unhealthyReason()!, /a change queued 1\.0s ago is not applied yet/);
  health.queued(); // a later change does not reset the age of the oldest
  clock.t = 1200;
  assert.match(health.unhealthyReason()!, /queued 1\.2s ago/);
  health.synced(true, 100, false);
  assert.equal(health.unhealthyReason(), null);
});

test('changes queued while a sync ran stay pending, aged from that sync\'s start', () => {
  const { clock, health } = clocked(1000);
  health.queued();
  clock.t = 500;
  health.synced(false, 300, true); // started at 200
  clock.t = 1150;
  assert.equal(health.unhealthyReason(), null);
  clock.t = 1250;
  assert.match(health.unhealthyReason()!, /1\.1s ago/);
});

test('a stuck loop: no sync for syncPeriod plus the bound is unhealthy; live bounds apply at once', () => {
  const { clock, health } = clocked(1000, 10_000);
  health.synced(true, 10, false);
  clock.t = 10_900;
  assert.equal(health.unhealthyReason(), null);
  clock.t = 11_100;
  assert.match(health.unhealthyReason()!, /no sync has succeeded for 11\.1s/);
  health.setBounds(5000, 10_000);
  assert.equal(health.unhealthyReason(), null);
});

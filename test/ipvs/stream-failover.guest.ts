// Local -> remote failover and back under a steady stream of requests with the
// agent in IPVS mode, inside UML (run by test/uml/ipvs-stream-failover.test.ts):
// no request of the stream fails.
//
// The bound is zero because nothing in the switch can drop a connection: the
// local endpoint's real server goes to weight 0 (its connections finish on
// it, new ones are scheduled to the remote one) and comes back by a weight or
// an add, each one netlink request, and the rules beside the IPVS table are
// not rewritten (the frontend keeps usable endpoints throughout).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { streamFailover } from './stream-failover.js';

test('under a steady stream to the ClusterIP, the local endpoint going unready and ready again fails no request (IPVS mode)', async () => {
  const rounds = await streamFailover('ipvs', { rounds: 2, concurrency: 2, intervalMs: 10, timeoutMs: 10_000 });
  for (const [i, { summary }] of rounds.entries()) {
    assert.equal(summary.failed, 0, `round ${i + 1}: ${JSON.stringify(summary)}`);
    // Both clusters answered within the round: the stream really spanned the failover and the way back.
    assert.ok((summary.bodies.brazil ?? 0) > 0 && (summary.bodies.chile01 ?? 0) >= 20, `round ${i + 1}: ${JSON.stringify(summary)}`);
    assert.deepEqual(Object.keys(summary.bodies).sort(), ['brazil', 'chile01']);
  }
});

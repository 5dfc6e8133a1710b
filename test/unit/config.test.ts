import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import { parseConfigText } from '../../src/config/load.js';
import { ConfigError, DEFAULT_CONFIG, DURATION_BOUNDS, FIELDS, configReferenceTable, validateConfig, type Config } from '../../src/config/schema.js';
import { MAX_TIMER_MS, parseDuration } from '../../src/config/duration.js';

test('durations parse in Go syntax and reject anything else', () => {
  assert.equal(parseDuration('100ms'), 100);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('1.5s'), 1500);
  for (const bad of ['', '100', 'ms', '1 s', '-1s', '1d']) assert.equal(parseDuration(bad), null, bad);
});

test('an empty file yields the documented defaults', () => {
  assert.deepEqual(parseConfigText('', 'x.yaml'), DEFAULT_CONFIG);
});

test('a full file is read with durations in milliseconds', () => {
  const c = parseConfigText([
    'clusterName: brazil',
    'clusters: [{name: brazil}, {name: chile01}]',
    'minSyncInterval: 250ms',
    'syncPeriod: 2m',
    'masqueradeBit: 13',
    'clusterCIDR: 10.244.0.0/16',
    'iptablesBackend: legacy',
  ].join('\n'), 'x.yaml');
  assert.equal(c.clusterName, 'brazil');
  assert.deepEqual(c.clusters.map((x) => x.name), ['brazil', 'chile01']);
  assert.equal(c.minSyncInterval, 250);
  assert.equal(c.syncPeriod, 120_000);
  assert.equal(c.masqueradeBit, 13);
  assert.equal(c.iptablesBackend, 'legacy');
});

test('invalid values fail with a message naming the key and the value', () => {
  const cases: [string, RegExp][] = [
    ['minSyncInterval: fast', /config key "minSyncInterval": .*duration.*"fast"/],
    ['masqueradeBit: 40', /config key "masqueradeBit": .*0 to 31.*40/],
    ['iptablesBackend: ebpf', /config key "iptablesBackend": .*auto, nft, legacy.*"ebpf"/],
    ['clusterCIDR: 10.0.0.1/8', /config key "clusterCIDR".*"10.0.0.1\/8"/],
    ['clusters: [{name: Brazil}]', /config key "clusters\[0\].name".*"Brazil"/],
    ['clusters: [{name: a}, {name: a}]', /config key "clusters\[1\].name": is listed twice/],
    ['clusters: [{name: a, cidr: x}]', /config key "clusters\[0\].cidr": is not a known key/],
    ['minSyncIntervall: 1s', /config key "minSyncIntervall": is not a known key/],
    ['- a list', /config key "\(root\)"/],
    ['a: [', /not valid YAML at line/],
  ];
  for (const [text, expected] of cases) {
    assert.throws(() => parseConfigText(text, 'x.yaml'), (err: unknown) => err instanceof ConfigError && expected.test(err.message), text);
  }
});

test('the reference table lists every key with a default that parses back to the default in code', () => {
  const table = configReferenceTable();
  for (const field of Object.values(FIELDS)) {
    assert.match(table, new RegExp(`\\| \`${field.key}\` \\|`));
    const shown = parseYaml(`v: ${field.shownDefault}`).v;
    assert.deepEqual(field.parse(shown, field.key), field.default, field.key);
  }
});

test('README carries the generated configuration reference, unchanged', async () => {
  const { readFile } = await import('node:fs/promises');
  const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8');
  const section = /<!-- config-reference:start -->\n([\s\S]*?)\n<!-- config-reference:end -->/.exec(readme);
  assert.ok(section, 'README has the config-reference markers');
  assert.equal(section[1], configReferenceTable());
});

/** Every path of a number in the defaults: each duration key (as milliseconds) and every integer key. */
function numberPaths(value: unknown, path: string[] = []): string[][] {
  if (typeof value === 'number') return [path];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  return Object.entries(value).flatMap(([k, v]) => numberPaths(v, [...path, k]));
}

function withValue(path: readonly string[], value: unknown): Record<string, unknown> {
  return path.reduceRight<unknown>((inner, key) => ({ [key]: inner }), value) as Record<string, unknown>;
}

test('every numeric key, duration or not, refuses 1000h naming the key (a longer delay than a timer holds becomes 1 ms)', () => {
  const paths = numberPaths(DEFAULT_CONFIG);
  // Guards the walk itself: it must reach top-level and nested durations.
  for (const key of Object.keys(DURATION_BOUNDS)) assert.ok(paths.some((p) => p.join('.') === key), key);
  for (const path of paths) {
    const key = path.join('.');
    assert.throws(() => validateConfig(withValue(path, '1000h')), (err: unknown) => err instanceof ConfigError && err.key === key, key);
  }
});

test('each duration key accepts its bounds and refuses a millisecond more or less, naming the key', () => {
  for (const [key, { min, max }] of Object.entries(DURATION_BOUNDS)) {
    assert.ok(max <= MAX_TIMER_MS, `${key}: ${max} fits a timer`);
    const path = key.split('.');
    // The probe timeout must stay below the interval: pair each with the other's extreme.
    const doc = (ms: number) => {
      const d = withValue(path, `${ms}ms`);
      if (key === 'healthProbe.timeout') (d.healthProbe as Record<string, unknown>).interval = `${DURATION_BOUNDS['healthProbe.interval'].max}ms`;
      if (key === 'healthProbe.interval') (d.healthProbe as Record<string, unknown>).timeout = `${DURATION_BOUNDS['healthProbe.timeout'].min}ms`;
      return d;
    };
    const read = (c: Config) => path.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], c);
    assert.equal(read(validateConfig(doc(max))), max, `${key} at its maximum`);
    assert.equal(read(validateConfig(doc(min))), min, `${key} at its minimum`);
    assert.throws(() => validateConfig(doc(max + 1)), (err: unknown) => err instanceof ConfigError && err.key === key && /must be from/.test(err.message), `${key} above`);
    if (min > 0) assert.throws(() => validateConfig(doc(min - 1)), (err: unknown) => err instanceof ConfigError && err.key === key, `${key} below`);
  }
});

test("masqueradeBit 14 is refused with the reason: it is kube-proxy's masquerade mark", () => {
  assert.throws(() => validateConfig({ masqueradeBit: 14 }), (err: unknown) => err instanceof ConfigError && err.key === 'masqueradeBit' && /kube-proxy's masquerade bit 14/.test(err.message));
  assert.equal(validateConfig({ masqueradeBit: 13 }).masqueradeBit, 13);
});

test('clusterCIDR: the single-value form keeps working; a list gives one CIDR per family, in canonical text', () => {
  const single = parseConfigText('clusterCIDR: 10.244.0.0/16', 'x.yaml');
  assert.deepEqual(single.clusterCIDRs, ['10.244.0.0/16']);
  assert.equal(single.clusterCIDR, '10.244.0.0/16', 'the IPv4 rules keep masquerading by it');
  const dual = parseConfigText('clusterCIDR: [FD00:10:244:0::/56, 10.244.0.0/16]', 'x.yaml');
  assert.deepEqual(dual.clusterCIDRs, ['fd00:10:244::/56', '10.244.0.0/16']);
  assert.equal(dual.clusterCIDR, '10.244.0.0/16');
  const v6 = parseConfigText('clusterCIDR: fd00:10:244::/56', 'x.yaml');
  assert.deepEqual(v6.clusterCIDRs, ['fd00:10:244::/56']);
  assert.equal(v6.clusterCIDR, '', 'no IPv4 entry: the IPv4 masquerade rule is left out');
  for (const none of ['clusterCIDR: ""', 'clusterCIDR: []', '']) {
    const c = parseConfigText(none, 'x.yaml');
    assert.deepEqual([c.clusterCIDRs, c.clusterCIDR], [[], ''], none);
  }
});

test('CIDR lists accept both families; a bad entry is named by its key path and value', () => {
  const c = parseConfigText('clusters: [{name: chile01, podCIDRs: [10.2.0.0/16, "fd00:2::/56"], serviceCIDRs: ["FD00:2:96::/112"]}]', 'x.yaml');
  assert.deepEqual(c.clusters[0], { name: 'chile01', podCIDRs: ['10.2.0.0/16', 'fd00:2::/56'], serviceCIDRs: ['fd00:2:96::/112'] });
  const cases: [string, RegExp][] = [
    ['clusterCIDR: fd00::1/64', /^config key "clusterCIDR": must be an IPv4 or IPv6 CIDR .*: has host bits set \(the network is fd00::\/64\) \(got "fd00::1\/64"\)$/],
    ['clusterCIDR: [10.244.0.0/16, 10.245.0.0/16]', /^config key "clusterCIDR\[1\]": is a second IPv4 CIDR \(10.244.0.0\/16 is the first\): give at most one per family \(got "10.245.0.0\/16"\)$/],
    ['clusterCIDR: [10.244.0.0/16, fd00::/129]', /^config key "clusterCIDR\[1\]": .*prefix length that is not 0 to 128 \(got "fd00::\/129"\)$/],
    ['clusterCIDR: 7', /^config key "clusterCIDR": must be a string \(got 7\)$/],
    ['clusters: [{name: a, podCIDRs: [10.2.0.0/16, "fe80::1%eth0/64"]}]', /^config key "clusters\[0\].podCIDRs\[1\]": .*no valid IPv4 or IPv6 address.*\(got "fe80::1%eth0\/64"\)$/],
    ['clusters: [{name: a, nodeCIDRs: "fd00::/64"}]', /^config key "clusters\[0\].nodeCIDRs": must be a list of IPv4 or IPv6 CIDRs/],
  ];
  for (const [text, expected] of cases) {
    assert.throws(() => parseConfigText(text, 'x.yaml'), (err: unknown) => err instanceof ConfigError && expected.test(err.message), text);
  }
});

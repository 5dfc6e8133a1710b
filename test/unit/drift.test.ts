import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DriftWatch } from '../../src/drift/drift-watch.js';
import { assessJumps, chainId, fingerprint, parseListing, type ChainReader } from '../../src/drift/kernel-check.js';
import { decodeNfMessages, type NfEvent } from '../../src/drift/nf-events.js';
import { NfTablesMonitor, type MonitorReceiver, type NfMonitorHandlers, type OpenMonitorSocket } from '../../src/drift/nf-monitor.js';
import { GenerationFilter, type WatchedSet } from '../../src/drift/watch-filter.js';
import type { LegacySnapshot } from '../../src/drift/legacy-tables.js';
import { isJump, jumpMoves, specsOf, type InProcessJumps, type RuleHead } from '../../src/drift/nft-rules.js';
import { renderPayload } from '../../src/iptables/render.js';
import { silentLogger } from '../../src/log.js';
import { pino } from 'pino';
import { CHAIN_PREFIX, JUMPS, POLLED_DISPATCH_CHAINS } from '../../src/iptables/layout.js';
import type { ChainRef } from '../../src/iptables/plan-types.js';

// Datagrams read from the nf_tables group of a fresh namespace (kernel 6.x, iptables 1.8.9):
// `iptables-nft -t nat -I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`
// (the built-in chain created on first use, the rule, then the generation's end), then
// `iptables-nft -t nat -X MCS-SERVICES`.
const INSERT_DATAGRAM = '6c000000030a000402000000cc24000002000004080001006e6174000f000300505245524f5554494e4700000c000200000000000000000314000400080001000000000008000200ffffff9c0800050000000001080007006e61740008000a00000000010800060000000001d8010000060a000403000000cc24000002000004080001006e6174000f000200505245524f5554494e4700000c0003000000000000000004a00104002c0101000a0001006d617463680000001c0102000c000100636f6d6d656e74000800020000000000040103006b756265726e65746573207365727669636520706f7274616c7300000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002c0001000c000100636f756e746572001c0002000c00010000000000000000000c0002000000000000000000440001000e000100696d6d656469617465000000300002000800010000000000240002002000020008000100fffffffd120002004b5542452d5345525649434553000000';
const GEN_DATAGRAM = '380000000f0a000002000000cc24000000000004080001000000000408000200000024cc1100030069707461626c65732d6e667400000000';
const DELCHAIN_DATAGRAM = '3c000000050a000002000000cd24000002000005080001006e617400110003004d43532d5345525649434553000000000c0002000000000000000001';

// ---- a small encoder for synthetic notifications

function attr(type: number, value: Buffer): Buffer {
  const len = 4 + value.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  value.copy(out, 4);
  return out;
}
const str = (s: string) => Buffer.from(`${s}\0`);
const be32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

function message(msgType: number, family: number, attrs: Buffer[], portid = 4242): Buffer {
  const body = Buffer.concat([Buffer.from([family, 0, 0, 1]), ...attrs]);
  const header = Buffer.alloc(16);
  header.writeUInt32LE(16 + body.length, 0);
  header.writeUInt16LE((10 << 8) | msgType, 4);
  header.writeUInt32LE(portid, 12);
  return Buffer.concat([header, body]);
}
const IP = 2;
const rule = (op: 'new' | 'del', table: string, chain: string, family = IP, portid?: number) => message(op === 'new' ? 6 : 8, family, [attr(1, str(table)), attr(2, str(chain))], portid);
const chainMsg = (op: 'new' | 'del', table: string, chain: string, family = IP) => message(op === 'new' ? 3 : 5, family, [attr(1, str(table)), attr(3, str(chain))]);
const tableMsg = (op: 'new' | 'del', table: string, family = IP) => message(op === 'new' ? 0 : 2, family, [attr(1, str(table))]);
const gen = (id: number, pid: number, name = 'iptables-nft-re', portid = pid) => message(15, 0, [attr(1, be32(id)), attr(2, be32(pid)), attr(3, str(name))], portid);

const WATCH: WatchedSet = {
  family: 'ip', tables: new Set(['nat', 'filter']), prefix: CHAIN_PREFIX,
  builtins: new Set(JUMPS.map((j) => chainId(j.table, j.chain))),
};

test('decoder: a real datagram of iptables-nft inserting into nat PREROUTING, and its generation end', () => {
  assert.deepEqual(decodeNfMessages(Buffer.from(INSERT_DATAGRAM, 'hex')), [
    { type: 'change', kind: 'chain', op: 'new', family: 'ip', table: 'nat', chain: 'PREROUTING', portid: 9420 },
    { type: 'change', kind: 'rule', op: 'new', family: 'ip', table: 'nat', chain: 'PREROUTING', portid: 9420 },
  ]);
  assert.deepEqual(decodeNfMessages(Buffer.from(GEN_DATAGRAM, 'hex')), [{ type: 'generation', id: 4, pid: 9420, procName: 'iptables-nft', portid: 9420 }]);
  assert.deepEqual(decodeNfMessages(Buffer.from(DELCHAIN_DATAGRAM, 'hex')), [
    { type: 'change', kind: 'chain', op: 'del', family: 'ip', table: 'nat', chain: 'MCS-SERVICES', portid: 9421 },
  ]);
});

test('decoder: other subsystems, unused types and a truncated tail are skipped', () => {
  const other = message(6, IP, [attr(1, str('nat'))]);
  other.writeUInt16LE((1 << 8) | 6, 4); // ctnetlink, not nf_tables
  const trace = message(17, IP, [attr(1, str('nat'))]);
  const good = rule('del', 'filter', 'FORWARD');
  const truncated = rule('new', 'nat', 'OUTPUT').subarray(0, 20);
  const events = decodeNfMessages(Buffer.concat([other, trace, good, truncated]));
  assert.deepEqual(events, [{ type: 'change', kind: 'rule', op: 'del', family: 'ip', table: 'filter', chain: 'FORWARD', portid: 4242 }]);
  assert.deepEqual(decodeNfMessages(Buffer.alloc(0)), []);
});

test('filter: a rewrite of 10,000 foreign KUBE- rules is one generation with nothing watched', () => {
  const filter = new GenerationFilter(WATCH, () => false);
  const parts: Buffer[] = [tableMsg('new', 'nat')];
  for (let i = 0; i < 10_000; i++) parts.push(rule('del', 'nat', `KUBE-SEP-${i}`), rule('new', 'nat', `KUBE-SEP-${i}`));
  parts.push(chainMsg('new', 'nat', 'KUBE-SERVICES'), gen(7, 999));
  const verdicts = filter.push(decodeNfMessages(Buffer.concat(parts)));
  assert.equal(verdicts.length, 1);
  assert.equal(verdicts[0]!.origin, 'other');
  assert.equal(verdicts[0]!.changes, 20_002);
  assert.deepEqual(verdicts[0]!.touches, []);
});

test('filter: built-in chains holding our jumps, our chains and our tables are watched; each touch counted once', () => {
  const filter = new GenerationFilter(WATCH, () => false);
  const events: NfEvent[] = decodeNfMessages(Buffer.concat([
    rule('new', 'nat', 'PREROUTING'), rule('del', 'nat', 'PREROUTING'), rule('new', 'nat', 'PREROUTING'),
    rule('new', 'filter', 'INPUT'), // no jump of ours there
    rule('new', 'nat', 'PREROUTING', 10), // ip6tables: another family
    rule('del', 'mangle', 'PREROUTING'),
    rule('del', 'nat', 'MCS-SVC-ABC'), chainMsg('del', 'nat', 'MCS-SVC-ABC'),
    rule('new', 'filter', 'MCS-SERVICES'),
    tableMsg('del', 'filter'), tableMsg('new', 'nat'),
    gen(8, 1234, 'iptables'),
  ]));
  const [v] = filter.push(events);
  assert.equal(v!.origin, 'watched');
  assert.equal(v!.procName, 'iptables');
  assert.deepEqual(v!.touches, [
    { cause: 'builtin', table: 'nat', chain: 'PREROUTING' },
    { cause: 'chain_changed', table: 'nat', chain: 'MCS-SVC-ABC' },
    { cause: 'chain_deleted', table: 'nat', chain: 'MCS-SVC-ABC' },
    { cause: 'chain_changed', table: 'filter', chain: 'MCS-SERVICES' },
    { cause: 'table_deleted', table: 'filter' },
  ]);
});

test('filter: a generation the agent committed is dropped whole, and the next one starts clean', () => {
  const filter = new GenerationFilter(WATCH, (g) => g.pid === 77 || g.portid === 78);
  const verdicts = filter.push(decodeNfMessages(Buffer.concat([
    rule('new', 'nat', 'PREROUTING'), chainMsg('del', 'nat', 'MCS-SVC-X'), gen(1, 77),
    rule('new', 'nat', 'OUTPUT'), gen(2, 5, 'x', 78),
    rule('new', 'nat', 'KUBE-SERVICES'), gen(3, 88),
  ])));
  assert.deepEqual(verdicts.map((v) => [v.id, v.origin, v.touches.length]), [[1, 'agent', 0], [2, 'agent', 0], [3, 'other', 0]]);
});

const OURS = JUMPS[0]!.spec;
const KUBE = '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES';

test('jumps: a KUBE- jump ahead of ours is found and the repair payload moves only our jump', () => {
  const chains = new Map([[chainId('nat', 'PREROUTING'), [KUBE, OURS]]]);
  const { findings, units } = assessJumps(chains, JUMPS);
  assert.deepEqual(findings, [{ cause: 'jump_order', table: 'nat', chain: 'PREROUTING', spec: OURS, ahead: KUBE }]);
  assert.equal(renderPayload(units), `*nat\n-D PREROUTING ${OURS}\n-I PREROUTING 1 ${OURS}\nCOMMIT\n`);
});

test('jumps: a missing jump is inserted first; a foreign non-KUBE rule ahead and chains not read are left alone', () => {
  const chains = new Map([
    [chainId('nat', 'PREROUTING'), ['-s 192.168.0.0/16 -j USER-NAT', OURS, KUBE]],
    [chainId('nat', 'OUTPUT'), [KUBE]],
  ]);
  const { findings, units } = assessJumps(chains, JUMPS);
  assert.deepEqual(findings.map((f) => [f.cause, f.chain, f.ahead]), [['jump_missing', 'OUTPUT', KUBE]]);
  assert.equal(renderPayload(units), `*nat\n-I OUTPUT 1 ${JUMPS[1]!.spec}\nCOMMIT\n`);
  assert.deepEqual(assessJumps(new Map([[chainId('nat', 'PREROUTING'), [OURS, KUBE]]]), JUMPS).findings, []);
});

test('jumps: a duplicate of our jump is removed twice and inserted once', () => {
  const { findings, units } = assessJumps(new Map([[chainId('nat', 'PREROUTING'), [OURS, KUBE, OURS]]]), JUMPS);
  assert.deepEqual(findings.map((f) => f.cause), ['jump_order']);
  assert.equal(renderPayload(units), `*nat\n-D PREROUTING ${OURS}\n-D PREROUTING ${OURS}\n-I PREROUTING 1 ${OURS}\nCOMMIT\n`);
});

test('listing: iptables -S output of one chain, and fingerprints', () => {
  const text = `-P PREROUTING ACCEPT\n-A PREROUTING ${OURS}\n-A PREROUTING ${KUBE}\n`;
  assert.deepEqual(parseListing(text, 'PREROUTING'), [OURS, KUBE]);
  assert.equal(fingerprint([OURS, KUBE]), fingerprint([OURS, KUBE]));
  assert.notEqual(fingerprint([OURS, KUBE]), fingerprint([KUBE, OURS]));
  assert.equal(fingerprint(null), '-');
});

/** A kernel of built-in chains the watch reads and repairs through a fake backend. */
function fakeKernel(initial: Record<string, string[]>) {
  const chains = new Map(Object.entries(initial));
  const reads: string[] = [];
  const restores: string[] = [];
  const reader: ChainReader = {
    read: async (refs: readonly ChainRef[]) => {
      const out = new Map<string, string[] | null>();
      for (const r of refs) {
        reads.push(chainId(r.table, r.name));
        out.set(chainId(r.table, r.name), chains.get(chainId(r.table, r.name)) ?? null);
      }
      return out;
    },
  };
  const backend = {
    restore: async (payload: string) => {
      restores.push(payload);
      for (const line of payload.split('\n')) {
        const m = /^-([DI]) (\S+) (?:1 )?(.*)$/.exec(line);
        if (!m) continue;
        const id = chainId('nat', m[2]!);
        const rules = chains.get(id) ?? [];
        if (m[1] === 'D') rules.splice(rules.indexOf(m[3]!), 1);
        else rules.unshift(m[3]!);
        chains.set(id, rules);
      }
    },
  };
  return { chains, reads, restores, reader, backend };
}

function watchOn(kernel: ReturnType<typeof fakeKernel>) {
  let handlers: NfMonitorHandlers | null = null;
  const requests: number[] = [];
  const counts = new Map<string, number>();
  const bump = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
  const watch = new DriftWatch({
    mode: 'nft', reader: kernel.reader, backend: kernel.backend, jumps: JUMPS, prefix: CHAIN_PREFIX, dispatchChains: POLLED_DISPATCH_CHAINS,
    log: silentLogger(), requestRepair: () => requests.push(1),
    metrics: { generation: (o) => bump(`gen:${o}`), check: (t) => bump(`check:${t}`), detected: (c) => bump(`detected:${c}`), repaired: (c) => bump(`repaired:${c}`) },
    source: (h) => {
      handlers = h;
      return { start() {}, stop() {} };
    },
  });
  watch.start();
  const feed = (...parts: Buffer[]) => handlers!.onEvents(decodeNfMessages(Buffer.concat(parts)));
  return { watch, requests, counts, feed, lost: (r: string) => handlers!.onLost(r) };
}

test('watch: a storm of foreign generations touching PREROUTING costs one read and one restore', async () => {
  const kernel = fakeKernel({ 'nat/PREROUTING': [KUBE, OURS], 'nat/OUTPUT': [JUMPS[1]!.spec, KUBE] });
  const { watch, requests, counts, feed } = watchOn(kernel);
  for (let g = 0; g < 500; g++) feed(rule('new', 'nat', 'PREROUTING'), rule('new', 'nat', 'KUBE-SERVICES'), gen(g, 999));
  assert.equal(requests.length, 500, 'every watched generation asks; the runner collapses the asks');
  let fullSyncs = 0;
  await watch.repair(async () => fullSyncs++);
  await watch.repair(async () => fullSyncs++);
  assert.deepEqual(kernel.reads, ['nat/PREROUTING']);
  assert.equal(kernel.restores.length, 1);
  assert.deepEqual(kernel.chains.get('nat/PREROUTING'), [OURS, KUBE]);
  assert.equal(fullSyncs, 0);
  assert.equal(counts.get('gen:watched'), 500);
  assert.equal(counts.get('check:event'), 1);
  assert.equal(counts.get('repaired:jump_order'), 1);
});

test('watch: the agent\'s own restores wake nothing; a foreign change that leaves our jumps first costs a read, no restore', async () => {
  const kernel = fakeKernel({ 'nat/PREROUTING': [OURS, KUBE] });
  const { watch, requests, counts, feed } = watchOn(kernel);
  let exit!: () => void;
  watch.ownWrite(31337, new Promise<void>((r) => (exit = r)));
  feed(rule('new', 'nat', 'PREROUTING'), chainMsg('del', 'nat', 'MCS-SVC-OLD'), gen(1, 31337));
  exit();
  assert.equal(requests.length, 0);
  assert.equal(counts.get('gen:agent'), 1);
  feed(rule('new', 'nat', 'PREROUTING'), gen(2, 500));
  assert.equal(requests.length, 1);
  await watch.repair(async () => assert.fail('no full sync'));
  assert.equal(kernel.restores.length, 0);
  assert.equal(counts.get('check:event'), 1);
  assert.equal(counts.get('detected:jump_order'), undefined);
});

test('watch: a deleted MCS- chain is repaired by one full sync', async () => {
  const kernel = fakeKernel({ 'nat/PREROUTING': [OURS] });
  const { watch, counts, feed } = watchOn(kernel);
  feed(rule('del', 'nat', 'MCS-SERVICES'), rule('del', 'nat', 'MCS-SVC-A'), chainMsg('del', 'nat', 'MCS-SVC-A'), rule('new', 'nat', 'PREROUTING'), gen(1, 600));
  let fullSyncs = 0;
  await watch.repair(async () => fullSyncs++);
  assert.equal(fullSyncs, 1);
  assert.equal(kernel.reads.length, 0, 'the full sync reads the kernel itself');
  assert.equal(counts.get('repaired:chain_deleted'), 1);
  assert.equal(counts.get('repaired:chain_changed'), 1);
  await watch.stop();
});

test('watch: events lost in a burst cost one check of our jumps (repaired if moved) and no full sync', async () => {
  const kernel = fakeKernel({ 'nat/PREROUTING': [KUBE, OURS], 'nat/OUTPUT': [JUMPS[1]!.spec], 'nat/POSTROUTING': [JUMPS[2]!.spec], 'filter/FORWARD': [JUMPS[3]!.spec], 'filter/OUTPUT': [JUMPS[4]!.spec] });
  const { watch, counts, lost } = watchOn(kernel);
  lost('the receive buffer overflowed');
  lost('the receive buffer overflowed');
  await watch.repair(async () => assert.fail('no full sync'));
  assert.deepEqual(kernel.reads, ['nat/PREROUTING', 'nat/OUTPUT', 'nat/POSTROUTING', 'filter/FORWARD', 'filter/OUTPUT']);
  assert.deepEqual(kernel.chains.get('nat/PREROUTING'), [OURS, KUBE]);
  assert.equal(counts.get('detected:events_lost'), 1);
  assert.equal(counts.get('repaired:events_lost'), 1);
  assert.equal(counts.get('repaired:jump_order'), 1);
  await watch.repair(async () => assert.fail('no full sync'));
  assert.equal(kernel.reads.length, 5, 'nothing pending, nothing read');
  await watch.stop();
});

test('watch: a writer that keeps putting its rule ahead of ours is named once a minute, and each move is still repaired', async () => {
  const kernel = fakeKernel({ 'nat/PREROUTING': [KUBE, OURS] });
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (l: string) => lines.push(l) });
  let handlers: NfMonitorHandlers | null = null;
  let t = 0;
  const watch = new DriftWatch({
    mode: 'nft', reader: kernel.reader, backend: kernel.backend, jumps: JUMPS, prefix: CHAIN_PREFIX, dispatchChains: POLLED_DISPATCH_CHAINS,
    log, requestRepair: () => {}, now: () => t,
    source: (h) => {
      handlers = h;
      return { start() {}, stop() {} };
    },
  });
  watch.start();
  for (let i = 0; i < 25; i++) {
    kernel.chains.set('nat/PREROUTING', [KUBE, OURS]);
    handlers!.onEvents(decodeNfMessages(Buffer.concat([rule('new', 'nat', 'PREROUTING'), gen(i, 4321, 'other-proxy')])));
    await watch.repair(async () => assert.fail('no full sync'));
    assert.deepEqual(kernel.chains.get('nat/PREROUTING'), [OURS, KUBE]);
    t += 1000;
  }
  const fights = lines.filter((l) => l.includes('another writer keeps putting its rules first'));
  assert.equal(fights.length, 1);
  assert.match(fights[0]!, /other-proxy \(pid 4321\)/);
  assert.equal(kernel.restores.length, 25);
});

/** Stands in for the native monitor socket: its poll callback calls receive() exactly like this. */
class FakeSockets {
  readonly opened: { group: number; receive: MonitorReceiver; closed: boolean }[] = [];
  readonly open: OpenMonitorSocket = (group, receive) => {
    const socket = { group, receive, closed: false };
    this.opened.push(socket);
    return { unref: () => {}, close: () => { socket.closed = true; } };
  };
  get last() {
    return this.opened[this.opened.length - 1]!;
  }
}

test('monitor: a handler that throws never reaches the socket\'s native callback; it costs "events lost" instead', async () => {
  const sockets = new FakeSockets();
  const lost: string[] = [];
  let calls = 0;
  const monitor = new NfTablesMonitor({
    onEvents: () => {
      calls++;
      throw new Error('handler broke');
    },
    onLost: (reason) => {
      lost.push(reason);
      if (reason.startsWith('the receive buffer')) throw new Error('onLost broke too');
    },
  }, sockets.open);
  monitor.start();
  assert.equal(sockets.last.group, 7);
  // What the native callback runs for a wake's datagrams, a truncated one and dropped ones.
  assert.doesNotThrow(() => sockets.last.receive('datagrams', [Buffer.from(GEN_DATAGRAM, 'hex')]));
  assert.doesNotThrow(() => sockets.last.receive('lost', 'EMSGSIZE'));
  assert.doesNotThrow(() => sockets.last.receive('lost', 'ENOBUFS'));
  assert.equal(calls, 0, 'the native callback only queues the work');
  // An exception escaping from here would fail this test as uncaught.
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(calls, 1);
  assert.deepEqual(lost, [
    'handling a notification failed: handler broke',
    'a notification was truncated',
    'the receive buffer overflowed',
    'handling a notification failed: onLost broke too',
  ]);
  monitor.stop();
  assert.ok(sockets.last.closed);
});

test('monitor: a failed socket is reported as events lost and opened again; a stopped monitor opens nothing', async () => {
  const sockets = new FakeSockets();
  const lost: string[] = [];
  const seen: number[] = [];
  const monitor = new NfTablesMonitor({ onEvents: (events) => seen.push(events.length), onLost: (reason) => lost.push(reason) }, sockets.open);
  monitor.start();
  sockets.last.receive('failed', 'ECONNRESET');
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(lost, ['the monitor socket failed (ECONNRESET); opening it again']);
  const deadline = Date.now() + 30_000;
  while (sockets.opened.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(sockets.opened.length, 2, 'a second socket is opened');
  sockets.last.receive('datagrams', [Buffer.from(GEN_DATAGRAM, 'hex')]);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(seen.length, 1, 'the new socket delivers');
  sockets.last.receive('failed', 'ECONNRESET');
  monitor.stop();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(sockets.opened.length, 2, 'nothing reopens after stop');
});

const KUBE_HEAD: RuleHead = { handle: 5, target: 'KUBE-SERVICES', comment: 'kubernetes service portals' };
const OURS_HEAD: RuleHead = { handle: 4, target: 'MCS-SERVICES', comment: 'clusterset-proxy service portals' };

test('in-process rules: our jump is recognised by target and comment; others read as their comment and target', () => {
  assert.ok(isJump(OURS_HEAD, JUMPS[0]!));
  assert.ok(!isJump({ ...OURS_HEAD, comment: undefined }, JUMPS[0]!));
  assert.ok(!isJump({ ...OURS_HEAD, target: 'MCS-POSTROUTING' }, JUMPS[0]!));
  assert.deepEqual(specsOf('nat', 'PREROUTING', [KUBE_HEAD, OURS_HEAD, { handle: 9, target: 'DNAT' }, { handle: 10 }], JUMPS), [KUBE, OURS, '-j DNAT', '-j (rule 10)']);
  // The same target and comment in filter FORWARD is that chain's jump (with its conntrack match).
  const forward = JUMPS.find((j) => j.table === 'filter' && j.chain === 'FORWARD')!;
  assert.deepEqual(specsOf('filter', 'FORWARD', [OURS_HEAD], JUMPS), [forward.spec]);
  const { findings } = assessJumps(new Map([
    [chainId('nat', 'PREROUTING'), specsOf('nat', 'PREROUTING', [KUBE_HEAD, OURS_HEAD], JUMPS)],
    [chainId('filter', 'FORWARD'), specsOf('filter', 'FORWARD', [OURS_HEAD, KUBE_HEAD], JUMPS)],
  ]), JUMPS);
  assert.deepEqual(findings.map((f) => [f.chain, f.cause, f.ahead]), [['PREROUTING', 'jump_order', KUBE]]);
});

test('in-process rules: a misplaced jump moves (its changed copies dropped); a missing one cannot', () => {
  const copy: RuleHead = { handle: 7, target: 'MCS-SERVICES' };
  const read = new Map([[chainId('nat', 'PREROUTING'), [KUBE_HEAD, OURS_HEAD, copy, { ...OURS_HEAD, handle: 8 }]], [chainId('nat', 'OUTPUT'), [KUBE_HEAD]]]);
  const chains = new Map([...read].map(([id, r]) => [id, specsOf('nat', id.slice('nat/'.length), r, JUMPS)]));
  const { findings } = assessJumps(chains, JUMPS);
  assert.deepEqual(findings.map((f) => [f.chain, f.cause]), [['PREROUTING', 'jump_order'], ['OUTPUT', 'jump_missing']]);
  assert.deepEqual(jumpMoves(findings.slice(0, 1), read, JUMPS), [{ table: 'nat', chain: 'PREROUTING', keep: 4, drop: [7, 8] }]);
  assert.equal(jumpMoves(findings, read, JUMPS), null);
});

test('watch: in-process, a KUBE- jump ahead of ours is moved behind with no process started, and the move is the agent\'s own', async () => {
  const kernel = fakeKernel({});
  const chain: RuleHead[] = [KUBE_HEAD, OURS_HEAD];
  const moves: unknown[] = [];
  const inProcess: InProcessJumps = {
    portid: 3141,
    rules: (table, name) => (table === 'nat' && name === 'PREROUTING' ? [...chain] : []),
    moveFirst: (table, name, keep, drop) => {
      moves.push([table, name, keep, drop]);
      const kept = chain.find((r) => r.handle === keep)!;
      chain.splice(0, chain.length, { ...kept, handle: 11 }, ...chain.filter((r) => r !== kept && !drop.includes(r.handle)));
    },
  };
  let handlers: NfMonitorHandlers | null = null;
  const requests: number[] = [];
  const watch = new DriftWatch({
    mode: 'nft', reader: kernel.reader, inProcess, backend: kernel.backend, jumps: JUMPS, prefix: CHAIN_PREFIX, dispatchChains: POLLED_DISPATCH_CHAINS,
    log: silentLogger(), requestRepair: () => requests.push(1),
    source: (h) => {
      handlers = h;
      return { start() {}, stop() {} };
    },
  });
  watch.start();
  handlers!.onEvents(decodeNfMessages(Buffer.concat([rule('new', 'nat', 'PREROUTING'), gen(1, 999)])));
  assert.equal(requests.length, 1);
  await watch.repair(async () => assert.fail('no full sync'));
  assert.deepEqual(moves, [['nat', 'PREROUTING', 4, []]]);
  assert.deepEqual(chain.map((r) => r.target), ['MCS-SERVICES', 'KUBE-SERVICES']);
  assert.deepEqual(kernel.reads, [], 'nothing read through iptables');
  assert.deepEqual(kernel.restores, [], 'nothing restored through iptables');
  // The move's own generation, committed on the addon's port, wakes nothing.
  handlers!.onEvents(decodeNfMessages(Buffer.concat([rule('new', 'nat', 'PREROUTING'), rule('del', 'nat', 'PREROUTING'), gen(2, 1, 'node', 3141)])));
  assert.equal(requests.length, 1);
  await watch.stop();
});

test('watch: legacy in-process poll finds a KUBE- jump ahead of ours and a changed or deleted MCS- chain, never our own writes', async () => {
  const kernel = fakeKernel({});
  // Every built-in chain holding one of our jumps, ours first.
  const head = (spec: string): RuleHead => ({ handle: 0, target: /-j (\S+)/.exec(spec)![1]!, comment: /--comment "([^"]*)"/.exec(spec)![1]! });
  const tables = new Map<string, { builtins: Map<string, RuleHead[]>; chains: Map<string, string> }>();
  for (const j of JUMPS) {
    if (!tables.has(j.table)) tables.set(j.table, { builtins: new Map(), chains: new Map() });
    tables.get(j.table)!.builtins.set(j.chain, [head(j.spec), KUBE_HEAD]);
  }
  const nat = tables.get('nat')!;
  nat.chains.set('MCS-SERVICES', 'a1').set('MCS-SVC-X', 'b1');
  const legacy = { read: (t: string): LegacySnapshot | null => tables.get(t) ?? null };
  const requests: number[] = [];
  const counts = new Map<string, number>();
  const watch = new DriftWatch({
    mode: 'legacy', reader: kernel.reader, legacy, backend: kernel.backend, jumps: JUMPS, prefix: CHAIN_PREFIX, dispatchChains: POLLED_DISPATCH_CHAINS,
    log: silentLogger(), requestRepair: () => requests.push(1), pollIntervalMs: 20,
    metrics: { generation: () => {}, check: (t) => counts.set(t, (counts.get(t) ?? 0) + 1), detected: () => {}, repaired: () => {} },
  });
  watch.start();
  const polls = async (n: number) => {
    const until = (counts.get('poll') ?? 0) + n;
    while ((counts.get('poll') ?? 0) < until) await new Promise((r) => setTimeout(r, 5));
  };
  await polls(2);
  assert.equal(requests.length, 0, 'all in place: nothing to repair');
  // Our own write changes a chain: its fingerprint is taken when the write ends.
  let exit!: () => void;
  watch.ownWrite(1, new Promise<void>((r) => (exit = r)));
  nat.chains.set('MCS-SVC-X', 'b2');
  exit();
  await polls(2);
  assert.equal(requests.length, 0, 'our own write wakes nothing');
  nat.chains.set('MCS-SVC-X', 'b3');
  nat.chains.delete('MCS-SERVICES');
  nat.builtins.set('PREROUTING', [KUBE_HEAD, OURS_HEAD]);
  await polls(1);
  assert.ok(requests.length >= 1);
  let fullSyncs = 0;
  await watch.repair(async () => {
    fullSyncs++;
    nat.chains.set('MCS-SERVICES', 'a1');
  });
  assert.equal(fullSyncs, 1, 'changed chains: one full sync');
  assert.deepEqual(kernel.reads, [], 'no process started to read');
  await watch.stop();
});

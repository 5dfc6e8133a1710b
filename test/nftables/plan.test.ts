import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FrontendInput } from '../../src/nftables/plan.js';
type WeightedEndpoint = FrontendInput['endpoints'][number];
import { decode, encode } from '../../src/nftables/codec.js';
import { diffGroup } from '../../src/nftables/diff.js';
import { planSkeleton, SLOTS, priorityText } from '../../src/nftables/layout.js';
import { groupElements, planNftGroup } from '../../src/nftables/plan.js';
import { renderTable } from '../../src/nftables/render.js';
import { assignSlots, slotCounts } from '../../src/nftables/slots.js';

const ctx = { localCluster: 'brazil' };

function selection(endpoints: WeightedEndpoint[], affinity: number | null = null): FrontendInput[] {
  return [{ ip: '10.96.0.50', port: 80, protocol: 'TCP', name: { namespace: 'default', service: 'derived-web', port: 'http' }, affinity, endpoints }];
}

const ep = (ip: string, cluster: string, weight = 1): WeightedEndpoint => ({ ip, port: 8080, cluster, weight });

test('slot counts honour weights exactly at 1/64 and sum to 64', () => {
  assert.deepEqual(slotCounts([{ id: 'a', weight: 3 }, { id: 'b', weight: 1 }]), [48, 16]);
  assert.deepEqual(slotCounts([{ id: 'a', weight: 1 }, { id: 'b', weight: 1 }, { id: 'c', weight: 1 }]), [22, 21, 21]);
  assert.deepEqual(slotCounts([{ id: 'a', weight: 0 }, { id: 'b', weight: 2 }]), [0, 64]);
  const table = assignSlots([{ id: 'a:1', weight: 3 }, { id: 'b:1', weight: 1 }]);
  assert.equal(table.length, SLOTS);
  assert.equal(table.filter((x) => x === 'a:1').length, 48);
  assert.deepEqual(assignSlots([{ id: 'a:1', weight: 0 }]), []);
});

test('slot tables depend only on the endpoints, and removing one of ten moves at most 16 of 64 slots', () => {
  const eps = Array.from({ length: 10 }, (_, i) => ({ id: `10.0.0.${i + 1}:8080`, weight: 1 }));
  assert.deepEqual(assignSlots(eps), assignSlots([...eps].reverse().reverse()));
  const before = assignSlots(eps);
  const after = assignSlots(eps.filter((e) => e.id !== '10.0.0.4:8080'));
  const moved = before.filter((id, i) => id !== after[i]).length;
  const own = before.filter((id) => id === '10.0.0.4:8080').length;
  assert.ok(moved >= own && moved <= 16, `moved ${moved} slots, ${own} of them the removed endpoint's`);
  assert.ok(after.every((id) => id !== '10.0.0.4:8080'));
});

test('codec: keys and values round-trip through the kernel byte layout', () => {
  const key = encode(['ipv4', 'proto', 'port', 'slot'], '10.96.0.1 . tcp . 80 . 5');
  assert.equal(key.toString('hex'), '0a600001' + '06000000' + '00500000' + '05000000');
  assert.equal(decode(['ipv4', 'proto', 'port', 'slot'], key), '10.96.0.1 . tcp . 80 . 5');
  assert.throws(() => encode(['ipv4'], '10.96.0.256'));
  assert.throws(() => encode(['proto'], 'icmp'));
});

test('a port with endpoints gets 64 slots, its ClusterIP in service_ips and local endpoints in hairpin', () => {
  const g = planNftGroup('default/web', selection([ep('10.1.0.1', 'brazil'), ep('10.2.0.1', 'chile')]), ctx);
  const els = [...groupElements(g).values()];
  const slots = els.filter((e) => e.set === 'slots-50');
  assert.equal(slots.length, 64);
  assert.equal(slots.filter((e) => e.data === '10.1.0.1 . 8080').length, 32);
  assert.ok(slots.every((e) => e.key.startsWith('10.96.0.50 . tcp . 80 . ')));
  assert.equal(slots.find((e) => e.data === '10.2.0.1 . 8080')!.comment, undefined);
  assert.deepEqual(els.filter((e) => !e.set.startsWith('slots-')).map((e) => [e.set, e.key, e.comment]), [
    ['service_ports', '10.96.0.50 . tcp . 80', 'default/derived-web:http'],
    ['service_ips', '10.96.0.50', 'default/derived-web'],
    ['hairpin', '10.1.0.1 . 10.96.0.50', 'default/derived-web:http local endpoint'],
  ]);
});

test('a port without endpoints is a no_endpoints element and its name; affinity adds an affinity element', () => {
  const none = [...groupElements(planNftGroup('default/web', selection([]), ctx)).values()];
  assert.deepEqual(none, [
    { set: 'service_ports', key: '10.96.0.50 . tcp . 80', comment: 'default/derived-web:http' },
    { set: 'no_endpoints', key: '10.96.0.50 . tcp . 80', comment: 'default/derived-web:http' },
  ]);
  const sticky = [...groupElements(planNftGroup('default/web', selection([ep('10.2.0.1', 'chile')], 10800), ctx)).values()];
  assert.deepEqual(sticky.filter((e) => e.set === 'affinity').map((e) => e.key), ['10.96.0.50 . tcp . 80']);
});

test('one endpoint replaced changes only the slots it held and the slots that moved, nothing else', () => {
  const eps = Array.from({ length: 10 }, (_, i) => ep(`10.2.0.${i + 1}`, 'chile'));
  const before = planNftGroup('default/web', selection(eps), ctx);
  const after = planNftGroup('default/web', selection([...eps.slice(0, 9), ep('10.2.0.99', 'chile')]), ctx);
  const batch = diffGroup(before, after);
  assert.ok(batch.deletes.every((e) => e.set === 'slots-50') && batch.adds.every((e) => e.set === 'slots-50'));
  assert.equal(batch.deletes.length, batch.adds.length);
  assert.ok(batch.adds.length >= 6 && batch.adds.length <= 16, `${batch.adds.length} slots rewritten`);
  assert.deepEqual(diffGroup(after, after), { deletes: [], adds: [] });
  assert.equal(diffGroup(after, undefined).deletes.length, 66);
});

test('nat priorities print as nft lists them; the reject chain runs before kube-proxy\'s filter and nat', () => {
  const s = planSkeleton({ clusterCIDR: '10.244.0.0/16' });
  const by = new Map(s.chains.map((c) => [c.name, c]));
  const base = (name: string) => by.get(name) as Required<typeof s.chains[number]>;
  assert.equal(priorityText(base('dnat-prerouting')), 'dstnat - 10');
  assert.equal(priorityText(base('dnat-output')), '-110');
  assert.equal(priorityText(base('masq-postrouting')), 'srcnat - 10');
  assert.ok(base('reject-prerouting').priority < -110 && base('dnat-prerouting').priority < -100);
  assert.equal(planSkeleton({ clusterCIDR: '' }).chains.find((c) => c.name === 'masq-postrouting')!.rules.length, 2, 'hairpin and ClusterSet IPs are masqueraded without a cluster CIDR');
});

test('a ClusterSet IP has the ClusterIP\'s slots under its own key, is masqueraded through @clusterset_ips and has no hairpin elements', () => {
  const eps = [ep('10.1.0.1', 'brazil'), ep('10.2.0.1', 'chile')];
  const [clusterIP] = selection(eps);
  const g = planNftGroup('default/web', [clusterIP!, { ...clusterIP!, kind: 'clusterset-ip', ip: '242.1.0.50' }], ctx);
  const [a, b] = g.ports;
  assert.deepEqual([a!.clusterset, b!.clusterset, b!.slots, b!.localIPs], [false, true, a!.slots, []]);
  const lines = [...groupElements(g).values()].filter((e) => !e.set.startsWith('slots-')).map((e) => `${e.set} ${e.key} ${e.comment}`);
  assert.deepEqual(lines, [
    'service_ports 10.96.0.50 . tcp . 80 default/derived-web:http',
    'service_ips 10.96.0.50 default/derived-web',
    'hairpin 10.1.0.1 . 10.96.0.50 default/derived-web:http local endpoint',
    'service_ports 242.1.0.50 . tcp . 80 default/derived-web:http clusterset IP',
    'clusterset_ips 242.1.0.50 default/derived-web',
  ]);
  const slots = [...groupElements(g).values()].filter((e) => e.set === 'slots-50');
  assert.equal(slots.filter((e) => e.key.startsWith('242.1.0.50 ')).length, SLOTS, 'the ClusterSet IP\'s shard is its own address\'s');
  const masquerade = planSkeleton({ clusterCIDR: '10.244.0.0/16' }).chains.find((c) => c.name === 'masq-postrouting')!.rules;
  assert.ok(masquerade.includes('ct status dnat ct original ip daddr @clusterset_ips masquerade fully-random comment "clusterset IP"'));
  const none = planNftGroup('default/web', [{ ...clusterIP!, kind: 'clusterset-ip', ip: '242.1.0.50', endpoints: [] }], ctx);
  assert.deepEqual([...groupElements(none).values()].map((e) => `${e.set} ${e.key}`), ['service_ports 242.1.0.50 . tcp . 80', 'no_endpoints 242.1.0.50 . tcp . 80']);
});

test('the rendered table names what each element serves', () => {
  const g = planNftGroup('default/web', selection([ep('10.2.0.1', 'chile')]), ctx);
  const text = renderTable(planSkeleton({ clusterCIDR: '10.244.0.0/16' }), groupElements(g).values());
  assert.match(text, /^table ip clusterset-proxy \{/);
  assert.match(text, /10\.96\.0\.50 \. tcp \. 80 \. 0 : 10\.2\.0\.1 \. 8080/);
  assert.match(text, /set service_ips \{[^}]*elements = \{ 10\.96\.0\.50 comment "default\/derived-web" \}/);
  assert.match(text, /chain dnat-prerouting \{\n\t\tcomment "[^"]+"\n\t\ttype nat hook prerouting priority dstnat - 10; policy accept;/);
});

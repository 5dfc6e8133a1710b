import { readFile, writeFile } from 'node:fs/promises';
import { createRtNetlink, FlagsNew, type RtNetlinkSocket, type rt } from 'netlink';
import { addressBytes, addressFromBytes, mustParseAddress, mustParseCidr, unspecified, type IPFamily } from '../network/address.js';
import type { ObservedLink, ObservedRoute, ObservedState, RouteOp } from './diff.js';
import { routeMetric, type Ownership, type PlannedRoute, type VxlanLink } from './plan.js';

const AF_INET = 2;
const AF_BRIDGE = 7;
const AF_INET6 = 10;
const AF: Record<IPFamily, number> = { IPv4: AF_INET, IPv6: AF_INET6 };
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_LOCAL6 = 17;
const NLA_F_NESTED = 0x8000;
const RTNH_F_ONLINK = 4;
const RT_SCOPE_HOST = 254;
const CREATE_EXCL = FlagsNew.CREATE | FlagsNew.EXCL;
const CREATE_REPLACE = FlagsNew.CREATE | FlagsNew.REPLACE;
/** A request the kernel never answers must not stall the sync loop forever. */
const TIMEOUT = { timeout: 5000 };
const SYSCTL_ROOT = '/proc/sys';

/** The executor the reconciler drives: reads the owned objects, applies operations in order. */
export interface RouteExecutor {
  read(own: Ownership, sysctls: readonly string[]): Promise<ObservedState>;
  apply(ops: readonly RouteOp[], own: Ownership): Promise<void>;
  close(): void;
}

// ---- netlink attributes the package leaves as raw buffers (IFLA_LINKINFO)

function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}

function attrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let at = 0; at + 4 <= buf.length;) {
    const len = buf.readUInt16LE(at);
    if (len < 4) break;
    out.set(buf.readUInt16LE(at + 2) & ~NLA_F_NESTED, buf.subarray(at + 4, at + len));
    at += (len + 3) & ~3;
  }
  return out;
}

/**
 * The interface's alias records its underlay: the kernel reports no family for
 * a VXLAN device bound to the unspecified address, and fixes it at creation.
 */
const UNDERLAY_ALIAS = 'clusterset-proxy: vxlan underlay ';

function underlayOf(alias: string | undefined): IPFamily {
  return alias === `${UNDERLAY_ALIAS}IPv6` ? 'IPv6' : 'IPv4';
}

function vxlanLinkInfo(link: VxlanLink): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32LE(link.vni);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(link.port); // IFLA_VXLAN_PORT is in network byte order
  const parts = [attr(IFLA_VXLAN_ID, id), attr(IFLA_VXLAN_PORT, port), attr(IFLA_VXLAN_LEARNING, Buffer.from([0]))];
  // Local address :: makes the kernel open an IPv6 socket (any source address); without one it opens an IPv4 socket.
  if (link.underlay === 'IPv6') parts.push(attr(IFLA_VXLAN_LOCAL6, addressBytes(unspecified('IPv6'))));
  const data = Buffer.concat(parts);
  return Buffer.concat([attr(IFLA_INFO_KIND, Buffer.from('vxlan\0')), attr(IFLA_INFO_DATA | NLA_F_NESTED, data)]);
}

function parseLinkInfo(buf: Buffer | undefined): Pick<ObservedLink, 'kind' | 'vni' | 'port' | 'learning'> {
  const info = attrs(buf ?? Buffer.alloc(0));
  const kind = info.get(IFLA_INFO_KIND)?.toString('latin1').replace(/\0+$/, '') ?? '';
  const data = attrs(info.get(IFLA_INFO_DATA) ?? Buffer.alloc(0));
  const id = data.get(IFLA_VXLAN_ID);
  const port = data.get(IFLA_VXLAN_PORT);
  const learning = data.get(IFLA_VXLAN_LEARNING);
  return {
    kind,
    vni: id && id.length >= 4 ? id.readUInt32LE(0) : null,
    port: port && port.length >= 2 ? port.readUInt16BE(0) : null,
    learning: learning && learning.length >= 1 ? learning[0] !== 0 : null,
  };
}

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

function macText(buf: Buffer | undefined): string {
  return [...(buf ?? [])].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

function ipText(buf: Buffer | undefined): string | null {
  return addressFromBytes(buf)?.text ?? null;
}

/** A destination prefix as text; the default route carries no address. */
function prefixText(family: IPFamily, buf: Buffer | undefined, len: number | undefined): string {
  return `${ipText(buf) ?? unspecified(family).text}/${len ?? 0}`;
}

function cidrAttrs(text: string): { family: number; dstLen: number; dst: Buffer } {
  const cidr = mustParseCidr(text);
  return { family: AF[cidr.family], dstLen: cidr.bits, dst: addressBytes(cidr.base) };
}

function ipBytes(text: string): { family: number; bytes: Buffer } {
  const address = mustParseAddress(text);
  return { family: AF[address.family], bytes: addressBytes(address) };
}

const tableOf = (data: { table?: number }, attrs: { table?: number }): number | undefined => attrs.table ?? data.table;

function routeType(type: rt.Route['type']): ObservedRoute['type'] {
  return type === 'UNICAST' ? 'unicast' : type === 'UNREACHABLE' ? 'unreachable' : 'other';
}

function describe(op: RouteOp): string {
  switch (op.kind) {
    case 'link-add': case 'link-set': return `${op.kind} ${op.link.name} (vxlan ${op.link.vni}, port ${op.link.port}, mtu ${op.link.mtu})`;
    case 'link-del': return `link-del ${op.name}`;
    case 'addr-add': return `addr-add ${op.address} dev ${op.link}`;
    case 'sysctl': return `sysctl ${op.path}=${op.value}`;
    case 'fdb-add': case 'fdb-del': case 'neigh-set': case 'neigh-del': return `${op.kind} ${op.peer.mac} ${op.peer.ip} dev ${op.link}`;
    case 'route-set': return `route ${op.route.dst} ${op.route.via === null ? 'unreachable' : `via ${op.route.via}`}`;
    case 'route-del': return `route-del ${op.route.dst}`;
    case 'rule-add': case 'rule-del': return `${op.kind} to ${op.dst}`;
  }
}

/**
 * rtnetlink through the `netlink` package, one request at a time: a sync
 * issues a handful of requests per remote CIDR, and the package aborts the
 * process with a few hundred in flight on one socket.
 */
export class NetlinkExecutor implements RouteExecutor {
  private readonly socket: RtNetlinkSocket = createRtNetlink();

  async read(own: Ownership, sysctls: readonly string[]): Promise<ObservedState> {
    const link = await this.findLink(own.link);
    let fdb: ObservedState['fdb'] = [];
    let neighbors: ObservedState['neighbors'] = [];
    if (link) {
      const permanentOf = (family: number) => async () =>
        (await this.socket.getNeighbors({ family }, undefined, TIMEOUT))
          .filter((n) => n.data.ifindex === link.index && n.data.state?.permanent && n.attrs.lladdr && n.attrs.dst)
          .map((n) => ({ ip: ipText(n.attrs.dst) ?? '', mac: macText(n.attrs.lladdr) }))
          .filter((p) => p.ip !== '');
      fdb = await permanentOf(AF_BRIDGE)();
      neighbors = [...await permanentOf(AF_INET)(), ...await permanentOf(AF_INET6)()];
    }
    const routes: ObservedRoute[] = [];
    const rules: string[] = [];
    // A kernel without IPv6 answers an AF_INET6 dump with every family's objects: keep the asked family's.
    for (const family of ['IPv4', 'IPv6'] as const) {
      routes.push(...(await this.socket.getRoutes({ family: AF[family] }, undefined, TIMEOUT))
        .filter((r) => r.data.family === AF[family] && tableOf(r.data, r.attrs) === own.table && !r.data.flags?.cloned)
        .map((r): ObservedRoute => ({
          dst: prefixText(family, r.attrs.dst, r.data.dstLen),
          type: routeType(r.data.type),
          gateway: ipText(r.attrs.gateway),
          oif: r.attrs.oif ?? null,
          metric: r.attrs.priority ?? 0,
          tos: r.data.tos ?? 0,
        })));
      rules.push(...(await this.socket.getRules({ family: AF[family] }, undefined, TIMEOUT))
        .filter((r) => r.data.family === AF[family] && r.attrs.priority === own.priority && tableOf(r.data, r.attrs) === own.table)
        .map((r) => prefixText(family, r.attrs.dst, r.data.dstLen)));
    }
    const values: Record<string, string | null> = {};
    for (const path of sysctls) {
      values[path] = await readFile(`${SYSCTL_ROOT}/${path}`, 'utf8').then((t) => t.trim(), () => null);
    }
    return { link, fdb, neighbors, routes, rules, sysctls: values };
  }

  async apply(ops: readonly RouteOp[], own: Ownership): Promise<void> {
    for (const op of ops) {
      try {
        await this.run(op, own);
      } catch (err) {
        throw new Error(`${describe(op)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
  }

  close(): void {
    this.socket.socket.close();
  }

  private async findLink(name: string): Promise<ObservedLink | null> {
    const found = (await this.socket.getLinks(undefined, undefined, TIMEOUT)).find((l) => l.attrs.ifname === name);
    if (!found || found.data.index === undefined) return null;
    const index = found.data.index;
    const addresses = (await this.socket.getAddresses({ family: AF_INET }, undefined, TIMEOUT))
      .filter((a) => a.data.index === index)
      .map((a) => ipText(a.attrs.local ?? a.attrs.address))
      .filter((a): a is string => a !== null);
    return {
      addresses,
      index,
      name,
      ...parseLinkInfo(found.attrs.linkinfo),
      mtu: found.attrs.mtu ?? 0,
      mac: macText(found.attrs.address),
      up: found.data.flags?.up === true,
      underlay: underlayOf(found.attrs.ifalias),
    };
  }

  private async linkIndex(name: string): Promise<number> {
    const link = await this.findLink(name);
    if (!link) throw new Error(`interface ${name} does not exist`);
    return link.index;
  }

  private async run(op: RouteOp, own: Ownership): Promise<void> {
    const s = this.socket;
    switch (op.kind) {
      case 'link-add': {
        await s.newLink({}, { ifname: op.link.name, mtu: op.link.mtu, address: macBytes(op.link.mac), linkinfo: vxlanLinkInfo(op.link) }, { flags: CREATE_EXCL, ...TIMEOUT });
        // The kernel takes an alias only when changing a link, not when creating one.
        const ifalias = `${UNDERLAY_ALIAS}${op.link.underlay ?? 'IPv4'}`;
        await s.setLink({ index: await this.linkIndex(op.link.name), flags: { up: true }, change: { up: true } }, { ifalias }, TIMEOUT);
        return;
      }
      case 'link-set':
        await s.setLink({ index: await this.linkIndex(op.link.name), flags: { up: true }, change: { up: true } }, { mtu: op.link.mtu, address: macBytes(op.link.mac) }, TIMEOUT);
        return;
      case 'link-del':
        await s.delLink({ index: await this.linkIndex(op.name) }, {}, TIMEOUT);
        return;
      case 'addr-add': {
        const { family, bytes: address } = ipBytes(op.address);
        await s.newAddress({ family, prefixlen: family === AF_INET ? 32 : 128, scope: RT_SCOPE_HOST, index: await this.linkIndex(op.link) }, { local: address, address }, { flags: CREATE_REPLACE, ...TIMEOUT });
        return;
      }
      case 'sysctl':
        await writeFile(`${SYSCTL_ROOT}/${op.path}`, op.value);
        return;
      case 'fdb-add':
      case 'fdb-del': {
        const data = { family: AF_BRIDGE, ifindex: await this.linkIndex(op.link), state: { permanent: true as const }, flags: { self: true as const } };
        const peerAttrs = { lladdr: macBytes(op.peer.mac), dst: ipBytes(op.peer.ip).bytes };
        if (op.kind === 'fdb-add') await s.newNeighbor(data, peerAttrs, { flags: CREATE_REPLACE, ...TIMEOUT });
        else await s.delNeighbor(data, peerAttrs, TIMEOUT);
        return;
      }
      case 'neigh-set':
      case 'neigh-del': {
        const { family, bytes: dst } = ipBytes(op.peer.ip);
        const data = { family, ifindex: await this.linkIndex(op.link), state: { permanent: true as const } };
        if (op.kind === 'neigh-set') await s.newNeighbor(data, { dst, lladdr: macBytes(op.peer.mac) }, { flags: CREATE_REPLACE, ...TIMEOUT });
        else await s.delNeighbor(data, { dst }, TIMEOUT);
        return;
      }
      case 'route-set':
        await this.setRoute(op.route, own);
        return;
      case 'route-del': {
        const { family, dstLen, dst } = cidrAttrs(op.route.dst);
        await s.delRoute({ family, dstLen, tos: op.route.tos, table: 0 }, { dst, table: own.table, priority: op.route.metric }, TIMEOUT);
        return;
      }
      case 'rule-add':
      case 'rule-del': {
        const { family, dstLen, dst } = cidrAttrs(op.dst);
        const data = { family, dstLen, table: 0, action: 'toTbl' as const };
        const ruleAttrs = { dst, priority: own.priority, table: own.table };
        if (op.kind === 'rule-add') await s.newRule(data, ruleAttrs, { flags: CREATE_EXCL, ...TIMEOUT });
        else await s.delRule(data, ruleAttrs, TIMEOUT);
        return;
      }
    }
  }

  /** Replace in place: re-pointing a route never leaves a moment without one. */
  private async setRoute(route: PlannedRoute, own: Ownership): Promise<void> {
    const { family, dstLen, dst } = cidrAttrs(route.dst);
    // Tables above 255 only fit RTA_TABLE; rtm_table stays 0 as iproute2 does.
    const base = { family, dstLen, table: 0, protocol: 'STATIC' as const, scope: 'UNIVERSE' as const };
    const metric = routeMetric(route.dst);
    const routeAttrs: rt.RouteAttrs = { dst, table: own.table, ...(metric === 0 ? {} : { priority: metric }) };
    if (route.via === null) {
      await this.socket.newRoute({ ...base, type: 'UNREACHABLE' }, routeAttrs, { flags: CREATE_REPLACE, ...TIMEOUT });
      return;
    }
    routeAttrs.gateway = ipBytes(route.via).bytes;
    // Over VXLAN an IPv4 gateway is on no subnet of the interface: onlink tells the kernel to trust it.
    // An IPv6 one is link-local (see vxlanLinkLocal), on the interface's own fe80::/64.
    if (route.overVxlan) routeAttrs.oif = await this.linkIndex(own.link);
    const flags = route.overVxlan && family === AF_INET ? { __unknown: RTNH_F_ONLINK } : {};
    await this.socket.newRoute({ ...base, type: 'UNICAST', flags }, routeAttrs, { flags: CREATE_REPLACE, ...TIMEOUT });
  }
}

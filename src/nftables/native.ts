// The kernel through the nftables addon (native/nftables): element batches
// and dumps in-process on one netlink socket; the skeleton's rules through
// one `nft -f -` (written at start and on repair only).

import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOOK_NUMBER, NFT_IPV4, TABLE, type Hook, type NftFamily, type SetSpec, type Skeleton } from './layout.js';
import { CodecError, decode, encodeInto } from './codec.js';
import { isSetName, type Element } from './plan.js';
import { NftError, type NftablesClient, type NftErrorCode, type NftOp, type ObservedTable, type SkeletonOptions } from './client.js';
import { renderSkeletonScript } from './render.js';

type NativeOp =
  | { op: 'addTable'; family: number; table: string; flags?: number }
  | { op: 'delTable'; family: number; table: string }
  | { op: 'flushSet'; family: number; table: string; set: string }
  | { op: 'addElems' | 'delElems'; family: number; table: string; set: string; keyLen: number; keys: Buffer; dataLen?: number; data?: Buffer; comments?: string[] };

interface NativeDump {
  flags: number;
  chains: { name: string; hook?: number; priority?: number; type?: string; comment?: string }[];
  rules: { chain: string }[];
  sets: { name: string; keyLen: number; dataLen: number; count: number; keys: Buffer; data: Buffer; comments: (string | undefined)[] }[];
}

interface Addon {
  open(netnsPath?: string): unknown;
  close(handle: unknown): void;
  commit(handle: unknown, ops: NativeOp[]): void;
  dump(handle: unknown, family: number, table: string): NativeDump | null;
  lastKernelMs(handle: unknown): number;
  tableExists(handle: unknown, family: number, table: string): boolean;
  portid(handle: unknown): number;
  chainRules(handle: unknown, family: number, table: string, chain: string): { handle: number; target?: string; comment?: string }[];
  moveFirst(handle: unknown, family: number, table: string, chain: string, keep: number, drop: number[]): void;
  monitorOpen(group: number, rcvbuf: number, receive: (kind: 'datagrams' | 'lost' | 'failed', payload: Buffer[] | string) => void): unknown;
  monitorUnref(handle: unknown): void;
  monitorClose(handle: unknown): void;
}

let addon: Addon | null = null;

const ADDON_FILE = join('native', 'nftables', 'build', 'Release', 'nftables_batch.node');

/** A built addon of the package (`file` relative to its root): compiled (dist/src/...) and bundled (dist/agent) code sit at different depths. */
export function addonPath(file: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = dirname(dir)) {
    if (existsSync(join(dir, file))) return join(dir, file);
    if (dirname(dir) === dir) return join(here, file);
  }
}

/** The addon, loaded on first use: iptables mode never needs it. */
export function loadAddon(): Addon {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  const path = addonPath(ADDON_FILE);
  try {
    addon = require(path) as Addon;
  } catch (err) {
    throw new Error(`the nftables addon is not built (${(err as Error).message}); run npm ci with libnftnl-dev, libmnl-dev and pkg-config installed`);
  }
  return addon;
}

/** The table flag of a table whose base chains are not hooked in. */
const NFT_TABLE_F_DORMANT = 1;

const HOOK_NAMES = new Map(Object.entries(HOOK_NUMBER).map(([name, n]) => [n, name as Hook]));

export interface NativeClientOptions {
  /** Run in this network namespace (`ip netns` name); the caller's when absent. */
  readonly netns?: string;
  /** The nft binary for the skeleton; default `nft`. */
  readonly nft?: string;
  /** The table's family; default IPv4 (`table ip clusterset-proxy`). */
  readonly family?: NftFamily;
}

export class NativeNftables implements NftablesClient {
  private readonly addon = loadAddon();
  private readonly handle: unknown;
  readonly family: NftFamily;

  constructor(private readonly options: NativeClientOptions = {}) {
    this.family = options.family ?? NFT_IPV4;
    this.handle = this.addon.open(options.netns ? `/var/run/netns/${options.netns}` : undefined);
  }

  async writeSkeleton(skeleton: Skeleton, options: SkeletonOptions = {}): Promise<void> {
    if (skeleton.family !== this.family) throw new NftError(`the skeleton of table ${skeleton.family.name} was handed to the ${this.family.name} client`, 'EINVAL', -1);
    const script = renderSkeletonScript(skeleton, options.dormant);
    const [file, args] = this.options.netns ? ['ip', ['netns', 'exec', this.options.netns, this.options.nft ?? 'nft', '-f', '-']] : [this.options.nft ?? 'nft', ['-f', '-']];
    await new Promise<void>((resolve, reject) => {
      const child = execFile(file, args as string[], { maxBuffer: 1 << 20 }, (err, _out, stderr) => {
        if (err) reject(new NftError(`nft -f refused the skeleton: ${stderr.trim() || err.message}`, 'EINVAL', -1));
        else resolve();
      });
      child.stdin!.end(script);
    });
  }

  async commit(ops: readonly NftOp[]): Promise<void> {
    const native = ops.map((op) => toNative(op, this.family));
    try {
      this.addon.commit(this.handle, native);
    } catch (err) {
      const e = err as Error & { code?: string; opIndex?: number };
      if (e.code === undefined) throw err;
      const index = e.opIndex ?? -1;
      throw new NftError(`${e.message}${index >= 0 ? ` (${describeOp(ops[index]!, this.family)})` : ''}`, e.code as NftErrorCode, index);
    }
  }

  async read(): Promise<ObservedTable | null> {
    const family = this.family;
    const dump = this.addon.dump(this.handle, family.number, TABLE);
    if (!dump) return null;
    const rules = new Map<string, number>();
    for (const r of dump.rules) rules.set(r.chain, (rules.get(r.chain) ?? 0) + 1);
    return {
      dormant: (dump.flags & NFT_TABLE_F_DORMANT) !== 0,
      chains: dump.chains.map((c) => ({
        name: c.name, rules: rules.get(c.name) ?? 0, ...(c.comment === undefined ? {} : { comment: c.comment }),
        ...(c.hook === undefined ? {} : { type: c.type, hook: HOOK_NAMES.get(c.hook), priority: c.priority }),
      })),
      // Anonymous sets (`__map0`...) belong to the rules that hold them: not part of the table's named sets.
      sets: dump.sets.filter((s) => !s.name.startsWith('__')).map((s) => {
        const spec = isSetName(s.name) ? family.setByName.get(s.name) : undefined;
        const fits = spec && s.keyLen === spec.keyLen && s.dataLen === spec.dataLen;
        // Elements decode when asked for, set by set: a full sync at 10,000 services reads 650,000.
        // A set of ours with a foreign shape is reported without elements; the sync rewrites the skeleton.
        return {
          name: s.name, keyLen: s.keyLen, dataLen: s.dataLen,
          ...(fits ? { packed: { keys: s.keys, data: s.data, count: s.count } } : {}),
          get elements(): Element[] {
            return fits ? unpack(spec, s) : [];
          },
        };
      }),
    };
  }

  close(): void {
    this.addon.close(this.handle);
  }

  /** Whether `table ip <name>` (ip6 for an IPv6 client) exists (kube-proxy's is `kube-proxy`), without reading it. */
  tableExists(name: string): boolean {
    return this.addon.tableExists(this.handle, this.family.number, name);
  }

  /** Milliseconds the last commit spent between sending its batch and the kernel's answer. */
  lastKernelMs(): number {
    return this.addon.lastKernelMs(this.handle);
  }
}

function unpack(spec: SetSpec, s: NativeDump['sets'][number]): Element[] {
  const out: Element[] = new Array(s.count);
  for (let i = 0; i < s.count; i++) {
    const key = decode(spec.key, s.keys.subarray(i * s.keyLen, (i + 1) * s.keyLen));
    const data = s.dataLen > 0 ? decode(spec.data, s.data.subarray(i * s.dataLen, (i + 1) * s.dataLen)) : undefined;
    const comment = s.comments[i];
    out[i] = { set: spec.name, key, ...(data !== undefined ? { data } : {}), ...(comment ? { comment } : {}) };
  }
  return out;
}

function toNative(op: NftOp, family: NftFamily): NativeOp {
  const base = { family: family.number, table: TABLE };
  switch (op.op) {
    case 'deleteTable':
      return { op: 'delTable', ...base };
    case 'wakeTable':
      return { op: 'addTable', ...base, flags: 0 };
    case 'flushSet':
      return { op: 'flushSet', ...base, set: op.set };
    case 'addPacked':
    case 'deletePacked': {
      const { keyLen, dataLen } = family.setByName.get(op.set)!;
      if (op.op === 'deletePacked') return { op: 'delElems', ...base, set: op.set, keyLen, keys: op.keys };
      return { op: 'addElems', ...base, set: op.set, keyLen, keys: op.keys, ...(dataLen > 0 ? { dataLen, data: op.data ?? Buffer.alloc(0) } : {}) };
    }
    default: {
      const spec = family.setByName.get(op.set)!;
      const adding = op.op === 'addElements';
      const { keyLen, dataLen } = spec;
      const keys = Buffer.alloc(keyLen * op.elements.length);
      op.elements.forEach((e, i) => encodeInto(spec.key, e.key, keys, i * keyLen));
      if (!adding) return { op: 'delElems', ...base, set: op.set, keyLen, keys };
      const out: NativeOp = { op: 'addElems', ...base, set: op.set, keyLen, keys };
      if (dataLen > 0) {
        const data = Buffer.alloc(dataLen * op.elements.length);
        op.elements.forEach((e, i) => {
          if (e.data === undefined) throw new CodecError(`element ${e.key} of map ${op.set} has no value`);
          encodeInto(spec.data, e.data, data, i * dataLen);
        });
        Object.assign(out, { dataLen, data });
      }
      if (op.elements.some((e) => e.comment)) Object.assign(out, { comments: op.elements.map((e) => e.comment ?? '') });
      return out;
    }
  }
}

export function describeOp(op: NftOp, family: NftFamily): string {
  switch (op.op) {
    case 'deleteTable':
      return `delete table ${family.name} ${TABLE}`;
    case 'wakeTable':
      return `add table ${family.name} ${TABLE} (wake)`;
    case 'flushSet':
      return `flush set ${family.name} ${TABLE} ${op.set}`;
    case 'addPacked':
    case 'deletePacked': {
      const spec = family.setByName.get(op.set)!;
      const n = op.keys.length / spec.keyLen;
      const first = n > 0 ? `, first ${decode(spec.key, op.keys.subarray(0, spec.keyLen))}` : '';
      return `${op.op === 'addPacked' ? 'add' : 'delete'} ${n} element(s) of ${op.set}${first}`;
    }
    default: {
      const first = op.elements[0];
      const verb = op.op === 'addElements' ? 'add' : 'delete';
      return `${verb} ${op.elements.length} element(s) of ${op.set}${first ? `, first ${first.key}` : ''}`;
    }
  }
}


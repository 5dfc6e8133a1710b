// A fake nf_tables with the kernel's semantics for what the data plane does:
// one family's table, its sets and base chains, element add/delete with the kernel's
// errors (ENOENT for a missing table, set or element; EEXIST for a key that
// exists with another value), batches that apply whole or not at all, and
// the dormant flag (set by the skeleton script's flags, cleared by a wake).
// The conformance suite runs the same cases against it and the kernel.

import { commentText, NFT_IPV4, type NftFamily, type SetName, type SetSpec, type Skeleton } from './layout.js';
import { decode, encode } from './codec.js';
import type { Element } from './plan.js';
import { NftError, type NftablesClient, type NftOp, type ObservedChain, type ObservedTable, type SkeletonOptions } from './client.js';
import { describeOp } from './native.js';

interface FakeSet {
  readonly keyLen: number;
  readonly dataLen: number;
  readonly elements: Map<string, Element>;
}

interface FakeTable {
  readonly chains: Map<string, ObservedChain>;
  readonly sets: Map<string, FakeSet>;
  dormant: boolean;
}

export class FakeNftables implements NftablesClient {
  private table: FakeTable | null = null;
  /** Batches committed (successful or not), for tests that count kernel work. */
  commits = 0;
  skeletonWrites = 0;
  /** Elements written by successful batches. */
  elementsWritten = 0;

  constructor(readonly family: NftFamily = NFT_IPV4) {}

  async writeSkeleton(skeleton: Skeleton, options: SkeletonOptions = {}): Promise<void> {
    this.skeletonWrites++;
    const table: FakeTable = this.table ? cloneTable(this.table) : { chains: new Map(), sets: new Map(), dormant: false };
    if (skeleton.family !== this.family) throw new NftError(`nft -f refused the skeleton: table ${skeleton.family.name} is not this client's family ${this.family.name}`, 'EINVAL', -1);
    // nft sets the table's flags from the script: without `flags dormant` it wakes the table.
    table.dormant = options.dormant === true;
    for (const spec of skeleton.sets) {
      const { keyLen, dataLen } = spec;
      const have = table.sets.get(spec.name);
      // nft refuses to redeclare a set with another type: the whole script fails.
      if (have && (have.keyLen !== keyLen || have.dataLen !== dataLen)) throw new NftError(`nft -f refused the skeleton: set ${spec.name} exists with another type`, 'EEXIST', -1);
      if (!have) table.sets.set(spec.name, { keyLen, dataLen, elements: new Map() });
    }
    for (const c of skeleton.chains) {
      const have = table.chains.get(c.name);
      if (have && have.hook !== undefined && (have.hook !== c.hook || have.type !== c.type)) throw new NftError(`nft -f refused the skeleton: chain ${c.name} exists with another hook`, 'EEXIST', -1);
      table.chains.set(c.name, { name: c.name, type: c.type, hook: c.hook, priority: have?.priority ?? c.priority, rules: c.rules.length, comment: commentText(c.comment) });
    }
    this.table = table;
  }

  async commit(ops: readonly NftOp[]): Promise<void> {
    this.commits++;
    let table: FakeTable | null = this.table ? cloneTable(this.table) : null;
    let written = 0;
    ops.forEach((op, index) => {
      const fail = (code: 'ENOENT' | 'EEXIST', text: string) => {
        throw new NftError(`nf_tables batch: ${text} (${describeOp(op, this.family)})`, code, index);
      };
      if (op.op === 'wakeTable') {
        // nf_tables creates a missing table on any NEWTABLE, a wake included: bare, nothing hooked in.
        table ??= { chains: new Map(), sets: new Map(), dormant: false };
        table.dormant = false;
        return;
      }
      if (!table) fail('ENOENT', 'No such file or directory');
      if (op.op === 'deleteTable') {
        table = null;
        return;
      }
      const set = table!.sets.get(op.set);
      if (!set) return fail('ENOENT', 'No such file or directory');
      if (op.op === 'flushSet') {
        set.elements.clear();
        return;
      }
      const spec = this.family.setByName.get(op.set as SetName)!;
      const elements = 'keys' in op ? unpackOp(spec, op.keys, op.data) : op.elements;
      const deleting = op.op === 'deleteElements' || op.op === 'deletePacked';
      for (const e of elements) {
        encode(spec.key, e.key);
        if (deleting) {
          if (!set.elements.delete(e.key)) fail('ENOENT', 'No such file or directory');
          written++;
          continue;
        }
        if (e.data !== undefined) encode(spec.data, e.data);
        const have = set.elements.get(e.key);
        if (have) {
          // The kernel keeps an element re-added with the same value (comment included) and refuses another value.
          if (have.data !== e.data) fail('EEXIST', 'File exists');
          continue;
        }
        set.elements.set(e.key, { set: op.set, key: e.key, ...(e.data !== undefined ? { data: e.data } : {}), ...(e.comment ? { comment: e.comment } : {}) });
        written++;
      }
    });
    this.table = table;
    this.elementsWritten += written;
  }

  async read(): Promise<ObservedTable | null> {
    const t = this.table;
    if (!t) return null;
    return {
      dormant: t.dormant,
      chains: [...t.chains.values()],
      sets: [...t.sets].map(([name, s]) => ({ name, keyLen: s.keyLen, dataLen: s.dataLen, elements: [...s.elements.values()] })),
    };
  }

  close(): void {}

  // ---- what other programs do to the kernel, for drift tests

  /** `nft delete table ip|ip6 clusterset-proxy` by someone else. */
  dropTable(): void {
    this.table = null;
  }

  /** `nft delete rule ...` by someone else: the chain loses a rule. */
  dropRule(chain: string): void {
    const c = this.table?.chains.get(chain);
    if (c) this.table!.chains.set(chain, { ...c, rules: Math.max(0, c.rules - 1) });
  }
}

function unpackOp(spec: SetSpec, keys: Buffer, data: Buffer | undefined): Element[] {
  const { keyLen, dataLen } = spec;
  const out: Element[] = [];
  for (let i = 0; i < keys.length / keyLen; i++) {
    const key = decode(spec.key, keys.subarray(i * keyLen, (i + 1) * keyLen));
    out.push(dataLen > 0 && data ? { set: spec.name, key, data: decode(spec.data, data.subarray(i * dataLen, (i + 1) * dataLen)) } : { set: spec.name, key });
  }
  return out;
}

function cloneTable(t: FakeTable): FakeTable {
  return {
    dormant: t.dormant,
    chains: new Map(t.chains),
    sets: new Map([...t.sets].map(([name, s]) => [name, { keyLen: s.keyLen, dataLen: s.dataLen, elements: new Map(s.elements) }])),
  };
}

// Firewall marks of the agent's IPVS virtual services. Every mark carries the
// agent's tag in its top byte, so the agent recognises its own services in a
// table it shares with kube-proxy (which keys by address, never by mark) and
// leaves every other service alone. The rest of the mark comes from a hash of
// the frontend's identity (namespace/service:port/protocol), so a frontend
// keeps its mark across restarts; kube-proxy's bits 0x4000 and 0x8000 are
// never used. Two frontends whose hashes collide (about one pair in a few
// thousand frontends) take the next free value, in the order they are planned.

import { createHash } from 'node:crypto';
import type { FrontendSelection } from '../selection/selection.js';

/** The agent's tag: the top byte of each of its marks. */
export const MARK_TAG = 0x4d000000;
export const MARK_TAG_MASK = 0xff000000;
/** The bits a frontend's mark is drawn from: everything under the tag except kube-proxy's 0x4000 and 0x8000. */
export const MARK_VALUE_BITS = 0x00ff3fff;

export function isAgentMark(mark: number): boolean {
  return ((mark & MARK_TAG_MASK) >>> 0) === MARK_TAG;
}

export type FrontendIdentity = Pick<FrontendSelection, 'name' | 'protocol'>;

export function frontendIdentity(fe: FrontendIdentity): string {
  return `${fe.name.namespace}/${fe.name.service}:${fe.name.port}/${fe.protocol.toLowerCase()}`;
}

/** Spreads a value in [0, 2^22) over MARK_VALUE_BITS. */
function spread(v: number): number {
  return (MARK_TAG | ((v >>> 14) << 16) | (v & 0x3fff)) >>> 0;
}

function unspread(mark: number): number {
  return (((mark >>> 16) & 0xff) << 14) | (mark & 0x3fff);
}

const VALUES = 1 << 22;

/** The first mark a frontend tries. */
export function preferredMark(identity: string): number {
  const digest = createHash('sha256').update(identity).digest();
  return spread(digest.readUInt32BE(0) % VALUES);
}

/** Marks held by frontends; stable per identity for as long as the frontend is held. */
export class MarkAllocator {
  private readonly byIdentity = new Map<string, number>();
  private readonly byMark = new Map<number, string>();

  markOf(identity: string): number {
    const held = this.byIdentity.get(identity);
    if (held !== undefined) return held;
    let v = unspread(preferredMark(identity));
    for (let tries = 0; this.byMark.has(spread(v)); tries++) {
      if (tries >= VALUES) throw new Error('no firewall mark left for a new frontend');
      v = (v + 1) % VALUES;
    }
    const mark = spread(v);
    this.byIdentity.set(identity, mark);
    this.byMark.set(mark, identity);
    return mark;
  }

  /** The frontend's mark if it holds one. */
  peek(identity: string): number | undefined {
    return this.byIdentity.get(identity);
  }

  release(identity: string): void {
    const mark = this.byIdentity.get(identity);
    if (mark === undefined) return;
    this.byIdentity.delete(identity);
    this.byMark.delete(mark);
  }

  get size(): number {
    return this.byIdentity.size;
  }
}

export function markHex(mark: number): string {
  return `0x${(mark >>> 0).toString(16)}`;
}

// Slot elements as packed bytes, the form the kernel takes and gives back:
// a full sync at 10,000 services handles 640,000 of them, which as objects
// and strings cost seconds of allocation and garbage collection.

import { encodeInto } from './codec.js';
import type { NftPort } from './plan.js';

export const SLOT_KEY_LEN = 16;
export const SLOT_DATA_LEN = 8;

export interface Packed {
  readonly keys: Buffer;
  /** Empty for plain sets. */
  readonly data: Buffer;
  readonly count: number;
}

const PROTO: Readonly<Record<NftPort['protocol'], number>> = { tcp: 6, udp: 17, sctp: 132 };

/** Address (as an unsigned 32-bit number) and port of an endpoint `ip:port`, parsed once per sync. */
class EndpointBytes {
  private readonly cache = new Map<string, [number, number]>();
  private readonly scratch = Buffer.alloc(SLOT_DATA_LEN);

  get(id: string): [number, number] {
    let v = this.cache.get(id);
    if (!v) {
      const colon = id.lastIndexOf(':');
      this.scratch.fill(0);
      encodeInto(['ipv4', 'port'], `${id.slice(0, colon)} . ${id.slice(colon + 1)}`, this.scratch, 0);
      v = [this.scratch.readUInt32BE(0), this.scratch.readUInt16BE(4)];
      this.cache.set(id, v);
    }
    return v;
  }
}

/** The slot elements of these ports, packed. */
export function packSlots(ports: readonly NftPort[]): Packed {
  let count = 0;
  for (const p of ports) count += p.slots.length;
  const keys = Buffer.alloc(count * SLOT_KEY_LEN);
  const data = Buffer.alloc(count * SLOT_DATA_LEN);
  const endpoints = new EndpointBytes();
  const ip = Buffer.alloc(4);
  let i = 0;
  for (const p of ports) {
    if (p.slots.length === 0) continue;
    ip.fill(0);
    encodeInto(['ipv4'], p.clusterIP, ip, 0);
    const address = ip.readUInt32BE(0);
    const proto = PROTO[p.protocol];
    for (let slot = 0; slot < p.slots.length; slot++, i++) {
      const k = i * SLOT_KEY_LEN;
      keys.writeUInt32BE(address, k);
      keys[k + 4] = proto;
      keys.writeUInt16BE(p.port, k + 8);
      keys.writeUInt32LE(slot, k + 12);
      const [epIp, epPort] = endpoints.get(p.slots[slot]!);
      data.writeUInt32BE(epIp, i * SLOT_DATA_LEN);
      data.writeUInt16BE(epPort, i * SLOT_DATA_LEN + 4);
    }
  }
  return { keys, data, count };
}

export interface PackedDiff {
  readonly deletes: Packed;
  readonly adds: Packed;
}

/** What to delete from and add to `have` to make it `want` (a changed value: delete and add). */
export function diffPacked(have: Packed, want: Packed, keyLen: number, dataLen: number): PackedDiff {
  const none: Packed = { keys: Buffer.alloc(0), data: Buffer.alloc(0), count: 0 };
  if (have.count === 0) return { deletes: none, adds: want };
  if (want.count === 0) return { deletes: have, adds: none };
  const index = new Map<string, number>();
  for (let i = 0; i < have.count; i++) index.set(have.keys.toString('latin1', i * keyLen, (i + 1) * keyLen), i);
  const del: number[] = [];
  const add: number[] = [];
  for (let j = 0; j < want.count; j++) {
    const key = want.keys.toString('latin1', j * keyLen, (j + 1) * keyLen);
    const i = index.get(key);
    if (i === undefined) {
      add.push(j);
      continue;
    }
    index.delete(key);
    if (dataLen > 0 && have.data.compare(want.data, j * dataLen, (j + 1) * dataLen, i * dataLen, (i + 1) * dataLen) !== 0) {
      del.push(i);
      add.push(j);
    }
  }
  for (const i of index.values()) del.push(i);
  return { deletes: pick(have, del, keyLen, 0), adds: pick(want, add, keyLen, dataLen) };
}

function pick(from: Packed, indexes: readonly number[], keyLen: number, dataLen: number): Packed {
  const keys = Buffer.alloc(indexes.length * keyLen);
  const data = Buffer.alloc(indexes.length * dataLen);
  indexes.forEach((i, k) => {
    from.keys.copy(keys, k * keyLen, i * keyLen, (i + 1) * keyLen);
    if (dataLen > 0) from.data.copy(data, k * dataLen, i * dataLen, (i + 1) * dataLen);
  });
  return { keys, data, count: indexes.length };
}

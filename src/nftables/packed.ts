// Slot elements as packed bytes, the form the kernel takes and gives back:
// a full sync at 10,000 services handles 640,000 of them, which as objects
// and strings cost seconds of allocation and garbage collection.

import { encodeInto } from './codec.js';
import { shardSet, type NftFamily } from './layout.js';
import type { NftPort } from './plan.js';

export interface Packed {
  readonly keys: Buffer;
  /** Empty for plain sets. */
  readonly data: Buffer;
  readonly count: number;
}

/** Bytes of a slot key and of its value in a family's slot maps (IPv4: 16 and 8; IPv6: 28 and 20). */
export function slotLengths(family: NftFamily): { keyLen: number; dataLen: number } {
  const spec = family.setByName.get(shardSet(0))!;
  return { keyLen: spec.keyLen, dataLen: spec.dataLen };
}

/** The slot elements of these ports (all of one family), packed. */
export function packSlots(ports: readonly NftPort[], family: NftFamily): Packed {
  const { keyLen, dataLen } = slotLengths(family);
  const endpointFields = [family.address, 'port'] as const;
  const frontendFields = [family.address, 'proto', 'port'] as const;
  let count = 0;
  for (const p of ports) count += p.slots.length;
  const keys = Buffer.alloc(count * keyLen);
  const data = Buffer.alloc(count * dataLen);
  // Each endpoint's value is encoded once per call: a full sync packs 640,000 slots of far fewer endpoints.
  const endpoints = new Map<string, Buffer>();
  const frontend = Buffer.alloc(keyLen - 4);
  let i = 0;
  for (const p of ports) {
    if (p.slots.length === 0) continue;
    frontend.fill(0);
    encodeInto(frontendFields, `${p.clusterIP} . ${p.protocol} . ${p.port}`, frontend, 0);
    for (let slot = 0; slot < p.slots.length; slot++, i++) {
      const k = i * keyLen;
      frontend.copy(keys, k);
      keys.writeUInt32LE(slot, k + keyLen - 4);
      const id = p.slots[slot]!;
      let value = endpoints.get(id);
      if (!value) {
        const colon = id.lastIndexOf(':');
        value = Buffer.alloc(dataLen);
        encodeInto(endpointFields, `${id.slice(0, colon)} . ${id.slice(colon + 1)}`, value, 0);
        endpoints.set(id, value);
      }
      value.copy(data, i * dataLen);
    }
  }
  return { keys, data, count };
}

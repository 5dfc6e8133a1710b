import { createHash } from 'node:crypto';
import { EXTERNAL_CHAIN_PREFIX, SERVICE_CHAIN_PREFIX } from './layout.js';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 of sha256(text), first 16 characters (as kube-proxy names its chains). */
export function hash16(text: string): string {
  const digest = createHash('sha256').update(text).digest();
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 16) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    if (out.length === 16) break;
    value &= (1 << bits) - 1;
  }
  return out;
}

/** `namespace/name:port`, the comment every rule of a service port carries. */
export function portComment(namespace: string, name: string, portLabel: string): string {
  return `${namespace}/${name}:${portLabel}`;
}

const portId = (namespace: string, name: string, portLabel: string, protocol: string) => `${namespace}/${name}:${portLabel}/${protocol.toLowerCase()}`;

/** MCS-SVC-<hash16(namespace/name:port/protocol)>: stable for the life of the service port. */
export function serviceChainName(namespace: string, name: string, portLabel: string, protocol: string): string {
  return `${SERVICE_CHAIN_PREFIX}${hash16(portId(namespace, name, portLabel, protocol))}`;
}

/** MCS-EXT-<the same hash>: where the port's ClusterSet IPs enter its service chain. */
export function externalChainName(namespace: string, name: string, portLabel: string, protocol: string): string {
  return `${EXTERNAL_CHAIN_PREFIX}${hash16(portId(namespace, name, portLabel, protocol))}`;
}

/** Name of the xt_recent list remembering clients of one endpoint (session affinity). */
export function affinityListName(serviceChain: string, endpoint: string): string {
  return `MCS-SEP-${hash16(`${serviceChain}->${endpoint}`)}`;
}

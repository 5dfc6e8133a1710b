// One IPVS table with every feature the `ipvsadm -Sn` rendering handles, and
// the text ipvsadm 1.31 printed for it in the UML kernel. The unit test
// renders it; the kernel test programs it and compares with ipvsadm itself.

import type { IpvsTableEntry } from '../../src/ipvs/save-format.js';
import type { DestSpec, ServiceSpec } from '../../src/ipvs/types.js';

const svc = (key: ServiceSpec['key'], scheduler: string, extra: Partial<ServiceSpec> = {}): ServiceSpec => ({
  key, scheduler, flags: 0, timeout: 0, netmask: key.family === 4 ? 0xffffffff : 128, ...extra,
});
const masq = (address: string, port: number, weight: number, extra: Partial<DestSpec> = {}): DestSpec => ({
  address, port, weight, forward: 'masq', upperThreshold: 0, lowerThreshold: 0, ...extra,
});

/** In no particular order: the rendering sorts. */
export const SAVE_TABLE: IpvsTableEntry[] = [
  { service: svc({ kind: 'fwmark', family: 4, fwmark: 16384 }, 'wrr'), dests: [masq('10.0.2.2', 8080, 3), masq('10.0.2.1', 0, 1)] },
  { service: svc({ kind: 'address', family: 4, protocol: 'tcp', address: '10.96.0.10', port: 80 }, 'wrr'), dests: [masq('10.1.0.2', 8080, 3), masq('9.1.0.1', 8080, 1), masq('10.1.0.1', 8081, 1), masq('10.1.0.1', 8080, 0)] },
  { service: svc({ kind: 'address', family: 4, protocol: 'udp', address: '10.96.0.10', port: 53 }, 'rr', { flags: 0x1 | 0x4 | 0x10, timeout: 30, netmask: 0xffff0000 }), dests: [{ ...masq('10.1.0.1', 53, 2), forward: 'route' }] },
  { service: svc({ kind: 'address', family: 4, protocol: 'sctp', address: '10.96.0.11', port: 9 }, 'lc'), dests: [masq('10.1.0.1', 9, 1)] },
  { service: svc({ kind: 'address', family: 4, protocol: 'tcp', address: '10.96.0.9', port: 443 }, 'sh', { flags: 0x1 | 0x10, timeout: 60, netmask: 0xffffff00 }), dests: [{ ...masq('10.1.0.1', 443, 1), forward: 'tunnel' }] },
  { service: svc({ kind: 'address', family: 6, protocol: 'tcp', address: 'fd00:10:96::a', port: 443 }, 'mh', { flags: 0x1 | 0x8 | 0x10, timeout: 10, netmask: 64 }), dests: [masq('fd00:1::1', 8443, 2)] },
  { service: svc({ kind: 'fwmark', family: 6, fwmark: 5 }, 'rr', { flags: 0x1 | 0x8 | 0x20, timeout: 300 }), dests: [masq('fd00::1', 80, 2)] },
];

export const SAVE_TEXT = `-A -t 10.96.0.9:443 -s sh -p 60 -M 255.255.255.0 -b sh-port
-a -t 10.96.0.9:443 -r 10.1.0.1:443 -i -w 1 --tun-type ipip
-A -t 10.96.0.10:80 -s wrr
-a -t 10.96.0.10:80 -r 9.1.0.1:8080 -m -w 1
-a -t 10.96.0.10:80 -r 10.1.0.1:8080 -m -w 0
-a -t 10.96.0.10:80 -r 10.1.0.1:8081 -m -w 1
-a -t 10.96.0.10:80 -r 10.1.0.2:8080 -m -w 3
-A -u 10.96.0.10:53 -s rr -p 30 -M 255.255.0.0 -o -b flag-2
-a -u 10.96.0.10:53 -r 10.1.0.1:53 -g -w 2
-A --sctp-service 10.96.0.11:9 -s lc
-a --sctp-service 10.96.0.11:9 -r 10.1.0.1:9 -m -w 1
-A -t [fd00:10:96::a]:443 -s mh -p 10 -M 64 -b mh-fallback,mh-port
-a -t [fd00:10:96::a]:443 -r [fd00:1::1]:8443 -m -w 2
-A -f 5 -6 -s rr -p 300 -b flag-1,flag-3
-a -f 5 -6 -r [fd00::1]:80 -m -w 2
-A -f 16384 -s wrr
-a -f 16384 -r 10.0.2.1:0 -m -w 1
-a -f 16384 -r 10.0.2.2:8080 -m -w 3
`;

// The dual-stack scenario both modes' data-plane tests run: pods brazil
// (10.1.0.10, fd00:1::10) and chile01 (10.2.0.10, fd00:2::10); `serve` and
// `derived-serve` with a ClusterIP of each family, and `derived-only6` with an
// IPv6 ClusterIP alone.

import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { endpoint, importedSlice, service, slice } from './fixtures.js';

export const dual = (name: string, ip4: string, ip6: string): V1Service =>
  service('default', name, ip4, [{ name: 'http', port: 80 }], { clusterIPs: [ip4, ip6], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack' });
export const v6 = (s: V1EndpointSlice): V1EndpointSlice => ({ ...s, addressType: 'IPv6' });
export const localSlice6 = (ready = true): V1EndpointSlice => v6(slice('default', 'serve-local6', 'serve', [endpoint('fd00:1::10', { ready })]));

/** Every Service and slice of the scenario. */
export function dualStackObjects(): (V1Service | V1EndpointSlice)[] {
  return [
    dual('serve', '10.96.0.40', 'fd00:96::40'),
    slice('default', 'serve-local', 'serve', [endpoint('10.1.0.10')]),
    localSlice6(),
    dual('derived-serve', '10.96.0.50', 'fd00:96::50'),
    importedSlice('default', 'chile01', 'serve-1', 'derived-serve', [endpoint('10.2.0.10')]),
    v6(importedSlice('default', 'chile01', 'serve-6', 'derived-serve', [endpoint('fd00:2::10')])),
    service('default', 'derived-only6', 'fd00:96::60', [{ name: 'http', port: 80 }], { clusterIPs: ['fd00:96::60'], ipFamilies: ['IPv6'] }),
    v6(importedSlice('default', 'chile01', 'only6-1', 'derived-only6', [endpoint('fd00:2::10')])),
  ];
}

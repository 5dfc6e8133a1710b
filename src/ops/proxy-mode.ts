// Which data plane runs: config key `mode` / flag `--proxy-mode`. Unset means
// iptables, as before the key existed; `auto` follows kube-proxy: nftables
// when its `table ip kube-proxy` exists, iptables when its chains are in
// iptables; it never picks ipvs. An explicit value wins, except that `ipvs`
// is refused beside kube-proxy's nftables mode, which flushes every IPVS
// service (ours included) whenever it starts.

import type { Logger } from '../log.js';
import { detectBackend } from '../iptables/exec-backend.js';

import { PROXY_MODES, type ProxyModeSetting } from '../config/schema.js';

export { PROXY_MODES, type ProxyModeSetting };
export type ProxyMode = 'iptables' | 'nftables' | 'ipvs';

export interface ModeChoice {
  readonly mode: ProxyMode;
  /** One sentence for the log. */
  readonly reason: string;
}

/** What `auto` looks at. */
export interface KubeProxyEvidence {
  /** `table ip kube-proxy` or `table ip6 kube-proxy` exists (kube-proxy's nftables mode; an IPv6-only cluster has the ip6 one alone). */
  readonly nftablesTable: boolean;
  /** KUBE-* chains in iptables (either backend): kube-proxy's iptables mode. */
  readonly iptablesChains: number;
}

export class ProxyModeError extends Error {}

/** The choice for a setting, given what kube-proxy left in the kernel (consulted for `auto` and `ipvs` only). */
export function decideProxyMode(setting: ProxyModeSetting, evidence: () => KubeProxyEvidence): ModeChoice {
  switch (setting) {
    case 'ipvs':
      if (evidence().nftablesTable) {
        throw new ProxyModeError('proxy mode ipvs is refused: kube-proxy runs in nftables mode here (its table "ip kube-proxy" or "ip6 kube-proxy" exists), and it flushes every IPVS service when it starts; use nftables or iptables');
      }
      return { mode: 'ipvs', reason: 'mode ipvs is set; kube-proxy has no nftables table here' };
    case 'iptables':
    case 'nftables':
      return { mode: setting, reason: `mode ${setting} is set` };
    case 'auto': {
      const e = evidence();
      if (e.nftablesTable) return { mode: 'nftables', reason: 'auto: kube-proxy\'s nftables table "ip kube-proxy" or "ip6 kube-proxy" is present' };
      if (e.iptablesChains > 0) return { mode: 'iptables', reason: `auto: kube-proxy's chains are in iptables (${e.iptablesChains} KUBE- chains)` };
      return { mode: 'iptables', reason: 'auto: no kube-proxy table in nftables and no KUBE- chains in iptables; iptables, the default' };
    }
  }
}

export interface ProbeOptions {
  readonly netns?: string;
  readonly log: Logger;
  /** Whether `table ip kube-proxy` or `table ip6 kube-proxy` exists; by default asked through the nftables addon. */
  readonly nftablesTable?: () => Promise<boolean>;
}

/** Decides, reading the kernel only for `auto` and `ipvs`. */
export async function resolveProxyMode(setting: ProxyModeSetting, options: ProbeOptions): Promise<ModeChoice> {
  if (setting !== 'auto' && setting !== 'ipvs') return decideProxyMode(setting, () => ({ nftablesTable: false, iptablesChains: 0 }));
  const nftablesTable = await (options.nftablesTable ?? (() => kubeProxyTable(options.netns)))().catch((err: unknown) => {
    options.log.warn({ err: (err as Error).message }, `proxy mode ${setting}: could not ask nf_tables for kube-proxy's table; counting it as absent`);
    return false;
  });
  if (setting === 'ipvs') return decideProxyMode('ipvs', () => ({ nftablesTable, iptablesChains: 0 }));
  const iptablesChains = nftablesTable ? 0 : await detectBackend({ netns: options.netns, log: options.log }).then(
    (d) => d.evidence.nft.kubeChains + d.evidence.legacy.kubeChains,
    () => 0,
  );
  return decideProxyMode('auto', () => ({ nftablesTable, iptablesChains }));
}

async function kubeProxyTable(netns: string | undefined): Promise<boolean> {
  const { NativeNftables } = await import('../nftables/native.js');
  const { NFT_IPV4, NFT_IPV6 } = await import('../nftables/layout.js');
  for (const family of [NFT_IPV4, NFT_IPV6]) {
    const client = new NativeNftables({ ...(netns ? { netns } : {}), family });
    try {
      if (client.tableExists('kube-proxy')) return true;
    } finally {
      client.close();
    }
  }
  return false;
}

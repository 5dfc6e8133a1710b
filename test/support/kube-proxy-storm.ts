// A kube-proxy-style rewrite of its own nat chains: KUBE-SERVICES with one
// rule per service, one KUBE-SVC- and one KUBE-SEP- chain each, all declared
// (flushed) and written again in one --noflush restore, as kube-proxy's full
// sync does. It touches nothing but KUBE- chains: the drift watch must not
// react to it. `round` changes the endpoint addresses so each rewrite differs.

export function kubeProxyRewrite(services: number, round: number): string {
  const chains: string[] = [':KUBE-SERVICES - [0:0]', ':KUBE-MARK-MASQ - [0:0]'];
  const rules: string[] = ['-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000'];
  for (let i = 0; i < services; i++) {
    const id = `STORM${String(i).padStart(11, '0')}`;
    const ip = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    const ep = `10.${200 + (round & 7)}.${(i >> 8) & 255}.${i & 255}`;
    chains.push(`:KUBE-SVC-${id} - [0:0]`, `:KUBE-SEP-${id} - [0:0]`);
    rules.push(
      `-A KUBE-SERVICES -d ${ip}/32 -p tcp -m comment --comment "storm/s${i}:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-${id}`,
      `-A KUBE-SVC-${id} -m comment --comment "storm/s${i}:http -> ${ep}:8080" -j KUBE-SEP-${id}`,
      `-A KUBE-SEP-${id} -s ${ep}/32 -m comment --comment "storm/s${i}:http" -j KUBE-MARK-MASQ`,
      `-A KUBE-SEP-${id} -p tcp -m comment --comment "storm/s${i}:http" -m tcp -j DNAT --to-destination ${ep}:8080`,
    );
  }
  rules.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
  return ['*nat', ...chains, ...rules, 'COMMIT', ''].join('\n');
}

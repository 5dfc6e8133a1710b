// A restore payload of 5,000 service chains with 3 DNAT rules each (20,000
// rules, over 2 MB), dispatched from nat OUTPUT: large enough that a
// per-line cost that is not constant shows.
export function largeNatPayload(): string {
  const lines = ['*nat'];
  for (let i = 0; i < 5000; i++) lines.push(`:MCS-SVC-${i} - [0:0]`);
  for (let i = 0; i < 5000; i++) {
    lines.push(`-A OUTPUT -d 10.96.${i >> 8}.${i & 255}/32 -p tcp -m tcp --dport 80 -j MCS-SVC-${i}`);
    for (let e = 0; e < 3; e++) {
      lines.push(`-A MCS-SVC-${i} -p tcp -m comment --comment "ns/svc-${i}:http -> 10.1.${e}.${i & 255}:80" -j DNAT --to-destination 10.1.${e}.${i & 255}:80`);
    }
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

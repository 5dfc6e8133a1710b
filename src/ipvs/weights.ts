// IPVS weights are integers; a selection's are shares (a cluster's weight
// spread evenly over its endpoints: 3/2 and 1/1). Scaling every share by the
// least common denominator keeps the ratios exact, so wrr sends exactly
// `brazil=3,chile01=1` rather than an approximation of it.

const MAX_WEIGHT = 0x7fffffff;
const MAX_DENOMINATOR = 1_000_000;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** p/q closest to x with q at most MAX_DENOMINATOR (continued fractions). */
function fraction(x: number): [number, number] {
  let [h0, h1, k0, k1] = [0, 1, 1, 0];
  let v = x;
  for (let i = 0; i < 64; i++) {
    const a = Math.floor(v);
    const h2 = a * h1 + h0;
    const k2 = a * k1 + k0;
    if (k2 > MAX_DENOMINATOR) break;
    [h0, h1, k0, k1] = [h1, h2, k1, k2];
    const rest = v - a;
    if (rest < 1e-12 || Math.abs(h1 / k1 - x) < 1e-12 * Math.max(1, x)) break;
    v = 1 / rest;
  }
  return [h1, k1];
}

/** Integer weights in the same ratios as `shares` (positive shares stay positive), reduced by their common divisor. */
export function integerWeights(shares: readonly number[]): number[] {
  if (shares.length === 0) return [];
  const fractions = shares.map((s) => (s > 0 ? fraction(s) : ([0, 1] as [number, number])));
  let lcd = 1;
  for (const [, q] of fractions) lcd = (lcd / gcd(lcd, q)) * q;
  let weights = fractions.map(([p, q]) => p * (lcd / q));
  if (!weights.every(Number.isSafeInteger) || Math.max(...weights) > MAX_WEIGHT) {
    // Shares too fine to scale exactly: the nearest ratios in 1..65535.
    const max = Math.max(...shares);
    weights = shares.map((s) => (s > 0 ? Math.max(1, Math.round((s / max) * 65535)) : 0));
  }
  const common = weights.reduce((g, w) => gcd(g, w), 0);
  return common > 1 ? weights.map((w) => w / common) : weights;
}

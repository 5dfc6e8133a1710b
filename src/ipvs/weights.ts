// IPVS weights are integers; a selection's are shares (a cluster's weight
// spread evenly over its endpoints: 3/2 and 1/1). Equal shares are weight 1.
// Unequal shares are scaled by one fixed factor, WEIGHT_SCALE, whenever that
// keeps them exact integers: a weight then depends on its own share alone, so
// a cluster's endpoint count changing rewrites that cluster's real servers
// and no other's. (Scaling by the shares' least common denominator, the
// fallback for shares the fixed scale cannot express, rewrites every real
// server of the service whenever that denominator moves.) Either way the
// ratios are exact, so wrr sends exactly `brazil=3,chile01=1`; wrr steps by
// the weights' greatest common divisor, so large weights cost it nothing.

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

/** lcm(1..16): a share of n endpoints, n up to 16 (and many larger), scales to an exact integer. */
export const WEIGHT_SCALE = 720_720;

/** `shares` times WEIGHT_SCALE when each is an integer there (positive shares staying positive), else null. */
function fixedScale(shares: readonly number[]): number[] | null {
  const weights: number[] = [];
  for (const s of shares) {
    const scaled = s * WEIGHT_SCALE;
    const w = Math.round(scaled);
    if (w > MAX_WEIGHT || Math.abs(scaled - w) > 1e-3 || (s > 0 && w === 0)) return null;
    weights.push(s > 0 ? w : 0);
  }
  return weights;
}

/**
 * Integer weights in the same ratios as `shares` (positive shares stay
 * positive): 1 for equal shares, else on the fixed scale, else the shares'
 * least common denominator reduced by the weights' common divisor.
 */
export function integerWeights(shares: readonly number[]): number[] {
  if (shares.length === 0) return [];
  const positive = shares.filter((s) => s > 0);
  if (positive.every((s) => s === positive[0])) return shares.map((s) => (s > 0 ? 1 : 0));
  const fixed = fixedScale(shares);
  if (fixed) return fixed;
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

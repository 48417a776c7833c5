/** Multipliers of Kubernetes quantity suffixes (binary and decimal SI; `m` is milli). */
const SUFFIXES: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  Pi: 1024 ** 5,
  Ei: 1024 ** 6,
};

/** The value of a Kubernetes quantity (`94998850112`, `87473Mi`, `1.5Gi`, `500m`, `1e3`); NaN when it is not one. */
export function parseQuantity(text: string): number {
  const match = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+))?([a-zA-Z]*)$/.exec(text.trim());
  if (!match) return Number.NaN;
  const multiplier = SUFFIXES[match[3] ?? ''];
  if (multiplier === undefined) return Number.NaN;
  const exponent = match[2] !== undefined ? 10 ** Number(match[2]) : 1;
  return Number(match[1]) * exponent * multiplier;
}

/** One histogram series of a scrape: its count and quantiles estimated from its buckets. */
export interface HistogramSummary {
  labels: Record<string, string>;
  count: number;
  sum_s: number;
  /** Estimated as Prometheus' histogram_quantile does: linear within the bucket the rank falls in. */
  p50_ms: number;
  p99_ms: number;
}

function labelsOf(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((m) => [m[1] as string, m[2] as string]));
}

/** The quantile `q` of cumulative buckets (upper bound → count), in seconds. */
function quantile(q: number, buckets: Array<[number, number]>): number {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total === 0) return Number.NaN;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      if (!Number.isFinite(bound)) return lowerBound; // In the +Inf bucket: the highest finite bound.
      return lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / Math.max(1, count - lowerCount);
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return lowerBound;
}

/**
 * Scrapes `<url>/metrics` (the server's `CORRAL_METRICS` must let this process in: the default,
 * `loopback`, does for a server on this host) and summarizes every series of histogram `name`.
 */
export async function scrapeHistogram(url: string, name: string): Promise<HistogramSummary[]> {
  const response = await fetch(`${url}/metrics`);
  if (!response.ok) throw new Error(`GET /metrics answered ${response.status}: ${(await response.text()).slice(0, 200)}`);
  const series = new Map<string, { labels: Record<string, string>; buckets: Array<[number, number]>; count: number; sum: number }>();
  for (const line of (await response.text()).split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$/.exec(line);
    if (!match || !match[1]?.startsWith(name)) continue;
    const all = labelsOf(match[2] ?? '');
    const { le, ...labels } = all;
    const key = JSON.stringify(labels);
    const entry = series.get(key) ?? { labels, buckets: [], count: 0, sum: 0 };
    series.set(key, entry);
    const value = Number(match[3]);
    if (match[1] === `${name}_bucket` && le !== undefined) entry.buckets.push([le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), value]);
    else if (match[1] === `${name}_count`) entry.count = value;
    else if (match[1] === `${name}_sum`) entry.sum = value;
  }
  return [...series.values()].map((s) => ({
    labels: s.labels,
    count: s.count,
    sum_s: Math.round(s.sum * 1000) / 1000,
    p50_ms: Math.round(quantile(0.5, s.buckets) * 1000),
    p99_ms: Math.round(quantile(0.99, s.buckets) * 1000),
  }));
}

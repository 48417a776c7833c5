import type { RetryPolicy } from './retry.js';

/** How a client is set up. Everything is optional; see {@link resolveOptions} for defaults. */
export interface ClientOptions {
  /** Server URL, e.g. `http://127.0.0.1:8080` (a trailing `/api/v1` is dropped). Default: `CORRAL_API_URL`, `PRIME_API_BASE_URL`, `PRIME_BASE_URL`, then `http://127.0.0.1:8080`. */
  apiUrl?: string;
  /** API key. Default: `CORRAL_API_KEY`, then `PRIME_API_KEY`. */
  apiKey?: string;
  /** Per-request timeout of control-plane calls, ms. Default 30 000. */
  timeoutMs?: number;
  /** Retries of 429 answers: honours `Retry-After`, with backoff and jitter. Default 5 retries, 500 ms base, 60 s cap. */
  rateLimitRetry?: Partial<RetryPolicy>;
  /** Retries of connection errors and 502/503/504 where safe (protocol §3.10). Default 2 retries, 100 ms base, 2 s cap. */
  retry?: Partial<RetryPolicy>;
  /** Gateway tokens are refreshed this long before they expire, ms (at most half their lifetime). Default 60 000. */
  tokenRefreshMarginMs?: number;
  /** How long the status coalescer gathers ids before one `status:batchGet`, ms. Default 25. */
  statusBatchWindowMs?: number;
  /** `fetch` to use (for instrumentation). Default: the global one. */
  fetch?: typeof fetch;
  /** Clock for token expiry, ms since the epoch. Default `Date.now`. */
  now?: () => number;
  /** Environment to read defaults from. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** `User-Agent` header. */
  userAgent?: string;
}

/** Options with every default applied. */
export interface ResolvedOptions {
  apiUrl: string;
  apiKey: string | undefined;
  timeoutMs: number;
  rateLimitRetry: RetryPolicy;
  retry: RetryPolicy;
  tokenRefreshMarginMs: number;
  statusBatchWindowMs: number;
  fetch: typeof fetch;
  now: () => number;
  userAgent: string;
}

/** The SDK's version, sent in `User-Agent`. */
export const SDK_VERSION = '0.1.0';

/** Normalises a server URL: no trailing slash, no `/api/v1`. */
export function normaliseApiUrl(url: string): string {
  return url.trim().replace(/\/+$/, '').replace(/\/api\/v1$/, '');
}

/** Applies defaults: explicit options, then `CORRAL_*`, then the Prime SDK's variables. */
export function resolveOptions(options: ClientOptions = {}): ResolvedOptions {
  const env = options.env ?? process.env;
  const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  return {
    apiUrl: normaliseApiUrl(
      nonEmpty(options.apiUrl) ?? nonEmpty(env.CORRAL_API_URL) ?? nonEmpty(env.PRIME_API_BASE_URL) ?? nonEmpty(env.PRIME_BASE_URL) ?? 'http://127.0.0.1:8080',
    ),
    apiKey: nonEmpty(options.apiKey) ?? nonEmpty(env.CORRAL_API_KEY) ?? nonEmpty(env.PRIME_API_KEY),
    timeoutMs: options.timeoutMs ?? 30_000,
    rateLimitRetry: { maxRetries: 5, baseDelayMs: 500, maxDelayMs: 60_000, ...options.rateLimitRetry },
    retry: { maxRetries: 2, baseDelayMs: 100, maxDelayMs: 2_000, ...options.retry },
    tokenRefreshMarginMs: options.tokenRefreshMarginMs ?? 60_000,
    statusBatchWindowMs: options.statusBatchWindowMs ?? 25,
    fetch: options.fetch ?? ((input, init) => fetch(input, init)),
    now: options.now ?? Date.now,
    userAgent: options.userAgent ?? `corral-sdk/${SDK_VERSION} node/${process.versions.node}`,
  };
}

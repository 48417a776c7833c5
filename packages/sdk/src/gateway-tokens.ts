import type { ResolvedOptions } from './options.js';
import type { SandboxesApi } from './resources/sandboxes-api.js';

/** A gateway token and where to use it. */
export interface GatewayAuth {
  sandboxId: string;
  token: string;
  /** `<gateway_url>/<user_ns>/<job_id>`: every data-plane route hangs off it. */
  base: string;
  expiresAtMs: number;
  obtainedAtMs: number;
}

/**
 * Gateway tokens per sandbox: cached, refreshed `tokenRefreshMarginMs` before expiry (at most
 * half the token's lifetime early), fetched once for concurrent callers (single-flight).
 */
export class GatewayTokenCache {
  private readonly cache = new Map<string, GatewayAuth>();
  private readonly inflight = new Map<string, Promise<GatewayAuth>>();
  /** How many tokens were fetched from the server (for diagnostics and tests). */
  fetched = 0;

  constructor(
    private readonly api: SandboxesApi,
    private readonly options: ResolvedOptions,
  ) {}

  /** A usable token for the sandbox. */
  get(sandboxId: string): Promise<GatewayAuth> {
    const cached = this.cache.get(sandboxId);
    if (cached && this.fresh(cached)) return Promise.resolve(cached);
    const running = this.inflight.get(sandboxId);
    if (running) return running;
    const request = this.fetch(sandboxId).finally(() => this.inflight.delete(sandboxId));
    this.inflight.set(sandboxId, request);
    return request;
  }

  /** Drops the cached token if it is still `token` (a gateway refused it). */
  invalidate(sandboxId: string, token: string): void {
    if (this.cache.get(sandboxId)?.token === token) this.cache.delete(sandboxId);
  }

  /** Forgets the sandbox's token. */
  forget(sandboxId: string): void {
    this.cache.delete(sandboxId);
  }

  /** Forgets every token. */
  clear(): void {
    this.cache.clear();
  }

  private fresh(auth: GatewayAuth): boolean {
    const lifetime = auth.expiresAtMs - auth.obtainedAtMs;
    const margin = Math.min(this.options.tokenRefreshMarginMs, lifetime / 2);
    return this.options.now() < auth.expiresAtMs - margin;
  }

  private async fetch(sandboxId: string): Promise<GatewayAuth> {
    const obtainedAtMs = this.options.now();
    const answer = await this.api.auth(sandboxId);
    this.fetched += 1;
    const expiresAtMs = Date.parse(answer.expires_at);
    const auth: GatewayAuth = {
      sandboxId,
      token: answer.token,
      base: `${answer.gateway_url.replace(/\/+$/, '')}/${encodeURIComponent(answer.user_ns)}/${encodeURIComponent(answer.job_id)}`,
      expiresAtMs: Number.isNaN(expiresAtMs) ? obtainedAtMs + 60_000 : expiresAtMs,
      obtainedAtMs,
    };
    this.cache.set(sandboxId, auth);
    return auth;
  }
}

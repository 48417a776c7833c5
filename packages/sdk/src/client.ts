import { type EgressLogEntry, type EgressLogOptions, type EgressPolicyChange, type EgressPolicyStatus, egressPolicyBody } from './egress.js';
import { type EventsOptions, type FollowEventsOptions, type SandboxEvent, type SandboxStats, eventsPage, followEvents, sandboxStats } from './events.js';
import type { GetHealthResponse, GetMeResponse } from './generated/api.js';
import { GatewayClient } from './gateway-client.js';
import { GatewayTokenCache } from './gateway-tokens.js';
import { HttpTransport } from './http.js';
import { type ClientOptions, type ResolvedOptions, resolveOptions } from './options.js';
import { ImagesApi } from './resources/images-api.js';
import { WebhooksApi } from './resources/webhooks-api.js';
import { KeysApi, TeamsApi, UsersApi, getMe } from './resources/admin-api.js';
import { SandboxesApi } from './resources/sandboxes-api.js';
import { TunnelsApi } from './resources/tunnels-api.js';
import { StatusCoalescer } from './status-coalescer.js';

/**
 * A connection to a Corral (or Prime-compatible) server: the control plane's endpoints, the
 * status coalescer shared by every `waitUntilRunning()`, and the gateway token cache.
 *
 * @example
 * ```ts
 * import { CorralClient } from '@corral/sdk';
 * const client = new CorralClient({ apiUrl: 'http://127.0.0.1:8080', apiKey: process.env.CORRAL_API_KEY });
 * const me = await client.me();
 * console.log(me.user.name);
 * ```
 */
export class CorralClient {
  readonly options: ResolvedOptions;
  readonly http: HttpTransport;
  readonly sandboxes: SandboxesApi;
  readonly tunnels: TunnelsApi;
  readonly users: UsersApi;
  readonly teams: TeamsApi;
  readonly keys: KeysApi;
  /** Images built from Dockerfiles: build, list, logs, delete. */
  readonly images: ImagesApi;
  /** Webhook endpoints and their deliveries (a Corral extension). */
  readonly webhooks: WebhooksApi;
  /** Batches status reads into `status:batchGet` (25 ms window, ≤ 100 ids). */
  readonly statuses: StatusCoalescer;
  /** The data plane: exec, files, tokens. */
  readonly gateway: GatewayClient;

  constructor(options: ClientOptions = {}) {
    this.options = resolveOptions(options);
    this.http = new HttpTransport(this.options);
    this.sandboxes = new SandboxesApi(this.http);
    this.tunnels = new TunnelsApi(this.http);
    this.users = new UsersApi(this.http);
    this.teams = new TeamsApi(this.http);
    this.keys = new KeysApi(this.http);
    this.images = new ImagesApi(this.http);
    this.webhooks = new WebhooksApi(this.http);
    this.statuses = new StatusCoalescer(this.sandboxes, this.options.statusBatchWindowMs);
    this.gateway = new GatewayClient(new GatewayTokenCache(this.sandboxes, this.options), this.sandboxes, this.options);
  }

  /** `GET /me`: the caller and their teams. A cheap way to check the URL and key. */
  me(): Promise<GetMeResponse> {
    return getMe(this.http);
  }

  /** `GET /healthz`. */
  health(): Promise<GetHealthResponse> {
    return this.http.call('GET', '/healthz', { operation: 'GetHealth' });
  }

  /** A sandbox's egress policy, its generation and whether the runtime enforces it yet (`applied`). */
  getEgressPolicy(sandboxId: string): Promise<EgressPolicyStatus> {
    return this.sandboxes.getEgressPolicy(sandboxId);
  }

  /**
   * Replaces a sandbox's egress policy: `{ allow: [...] }` or `{ deny: [...] }` (`{ deny: [] }` is
   * open, `{ allow: [] }` is none). A running sandbox follows it within a second; the answer's
   * `applied` says whether it already does.
   *
   * @example
   * ```ts
   * await client.setEgressPolicy(id, { allow: ['*.pypi.org', 'files.pythonhosted.org'] });
   * ```
   */
  setEgressPolicy(sandboxId: string, change: EgressPolicyChange): Promise<EgressPolicyStatus> {
    return this.sandboxes.setEgressPolicy(sandboxId, egressPolicyBody(change));
  }

  /** A sandbox's recent DNS answers and connection attempts, oldest first. */
  async egressLog(sandboxId: string, options: EgressLogOptions = {}): Promise<EgressLogEntry[]> {
    return (await this.sandboxes.egressLog(sandboxId, options.limit !== undefined ? { limit: options.limit } : {})).entries;
  }

  /**
   * A page of a sandbox's events, oldest first (a Corral extension); `hasMore` when the page is
   * full: ask again with `after` set to the last id.
   *
   * @example
   * ```ts
   * const { events } = await client.events(id, { limit: 50 });
   * for (const e of events) console.log(e.at, e.type, e.data);
   * ```
   */
  async events(sandboxId: string, options: EventsOptions = {}): Promise<{ events: SandboxEvent[]; hasMore: boolean }> {
    return eventsPage(this.http, sandboxId, options);
  }

  /**
   * A sandbox's events, then new ones as they happen, until it has ended (or `signal` aborts).
   *
   * @example
   * ```ts
   * for await (const e of client.followEvents(id)) console.log(e.type, e.data);
   * ```
   */
  followEvents(sandboxId: string, options: FollowEventsOptions = {}): AsyncGenerator<SandboxEvent> {
    return followEvents(this.http, sandboxId, options);
  }

  /**
   * A RUNNING or PAUSED sandbox's resource usage (a Corral extension): CPU, memory, pids, disk and
   * network. `ConflictError` (`SANDBOX_NOT_RUNNING`) for any other status.
   */
  stats(sandboxId: string): Promise<SandboxStats> {
    return sandboxStats(this.http, sandboxId);
  }

  /** Forgets every cached gateway token. */
  clearAuthCache(): void {
    this.gateway.tokens.clear();
  }
}

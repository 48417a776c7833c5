import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Server as HttpsServer, createServer as createHttpsServer } from 'node:https';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import type { CorralConfig } from '../config.js';
import { ApiError } from '../errors/api-error.js';
import type { AccessChange, AccessEvents } from '../services/access-events.js';
import type { Principal } from '../services/auth-service.js';
import type { GatewayTokens } from '../services/gateway-tokens.js';
import type { SandboxAccess } from '../services/sandbox-access.js';
import type { SandboxEvents } from '../services/sandbox-events.js';
import type { SandboxEventActor } from '../records/event-records.js';
import { isTerminal, type SandboxRecord } from '../records/sandbox-records.js';
import { type Dialer, proxyHttp, proxyUpgrade, refuseUpgradeWithPage, sendErrorPage } from './http-proxy.js';
import type { NetworkRecords } from './network-deps.js';
import type { ExposureProtocol, ExposureRecord } from '../records/network-records.js';
import type { SshGateway } from './ssh-gateway.js';
import { listenTcp, parsePortRange, type TcpForwarder } from './tcp-ports.js';
import { LINK_CLOSE } from './tunnel-frames.js';
import type { TunnelHub } from './tunnel-hub.js';

/** What the networking layer needs from the rest of the server. */
export interface NetworkDeps {
  config: CorralConfig;
  /** Exposures, SSH sessions and tunnels as stored. */
  store: NetworkRecords;
  /** Resolves sandboxes, checks they run here, hands back runtime handles, records activity. */
  sandboxAccess: SandboxAccess;
  /** Issues the gateway token an SSH session's `authorize` call carries. */
  tokens: Pick<GatewayTokens, 'issue'>;
  /** Announces access taken away (revoked keys, deleted users, changed memberships): swept at once. */
  accessEvents: Pick<AccessEvents, 'subscribe'>;
  /** Corral's SSH server, which this service starts with the first session and closes. */
  ssh: SshGateway;
  /** The reverse tunnels, served through this service's Host router. */
  tunnels: TunnelHub;
  log: FastifyBaseLogger;
  /** Where exposures and SSH sessions are recorded as sandbox events; none when absent. */
  events?: Pick<SandboxEvents, 'record'>;
}

/** `ExposePortResponse` / `ExposedPortInfo`, plus Corral's private-exposure fields. */
export interface ExposureView {
  exposure_id: string;
  sandbox_id: string;
  port: number;
  name: string | null;
  protocol: string;
  url: string;
  tls_socket: string;
  external_port: number | null;
  external_endpoint: string | null;
  created_at: string;
  auth: 'none' | 'token';
  access_token?: string;
}

const TOKEN_HEADER = 'x-corral-exposure-token';
const TOKEN_QUERY = 'corral_token';
const TOKEN_COOKIE = 'corral_exposure_token';

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;
type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return undefined;
}

/**
 * Port exposures (HTTP by hostname, TCP on their own ports), SSH sessions and reverse tunnels.
 *
 * HTTP exposures and tunnels are served on the API's own listener: a request whose Host is
 * `<id>.<proxyDomain>` never reaches the API router. Connections to sandbox ports go through
 * `SandboxAccess` (is the sandbox running here, which runtime handle) and the driver's `dial`.
 */
export class NetworkService {
  readonly ssh: SshGateway;
  readonly tunnels: TunnelHub;
  private readonly tcp = new Map<string, TcpForwarder>();
  /** TCP exposures the last listener sync found stored. */
  private tcpSeenStored = new Set<string>();
  /** TCP exposures this process could not listen for (the port is taken); not retried. */
  private readonly tcpListenFailed = new Set<string>();
  private readonly streams = new Map<string, Set<Duplex>>();
  private readonly domainSuffix: string;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private closed = false;
  private tlsServer: HttpsServer | null = null;
  /** The API's HTTP server, once started. */
  private server: HttpServer | null = null;
  private readonly unsubscribeAccess: () => void;

  constructor(private readonly deps: NetworkDeps) {
    this.domainSuffix = `.${deps.config.proxyDomain.toLowerCase().replace(/^\.+|\.+$/g, '')}`;
    this.ssh = deps.ssh;
    this.tunnels = deps.tunnels;
    this.unsubscribeAccess = deps.accessEvents.subscribe((change) => this.onAccessChange(change));
  }

  /**
   * Access was taken away (key revoked, user deleted, membership changed): sweep at once rather
   * than at the next timer tick, after any sweep already running (it may have read the store
   * before the change).
   */
  private async onAccessChange(change: AccessChange): Promise<void> {
    if (this.closed) return;
    await this.sweeping?.catch(() => undefined);
    await this.cleanup();
    this.deps.log.debug({ change }, 'network: swept after an access change');
  }

  /**
   * Puts the Host-header router in front of the request and upgrade listeners of the API's HTTP
   * server (call once every listener is registered; exposures and tunnels are served on it), restores
   * TCP listeners of stored exposures and starts the sweep.
   */
  async start(server: HttpServer): Promise<void> {
    this.server = server;
    const requestListeners = server.listeners('request') as RequestListener[];
    server.removeAllListeners('request');
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (this.routeRequest(req, res)) return;
      for (const listener of requestListeners) listener.call(server, req, res);
    });
    const upgradeListeners = server.listeners('upgrade') as UpgradeListener[];
    server.removeAllListeners('upgrade');
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (this.routeUpgrade(req, socket, head)) return;
      if (upgradeListeners.length === 0) refuseUpgradeWithPage(socket, 404, 'Not Found', 'No WebSocket endpoint here');
      for (const listener of upgradeListeners) listener.call(server, req, socket, head);
    });
    await this.startTls();
    await this.restoreTcpListeners();
    const every = Math.max(1000, this.deps.config.reconcileIntervalMs);
    this.sweepTimer = setInterval(() => void this.cleanup().catch((error: unknown) => this.deps.log.warn({ err: error }, 'network: cleanup failed')), every);
    this.sweepTimer.unref();
  }

  /**
   * With `CORRAL_PROXY_TLS_CERT` and `_KEY`, serves exposures and tunnels over HTTPS on
   * `CORRAL_PROXY_TLS_PORT`: TLS ends here and the request goes through the same Host router.
   * Anything that is not an exposure or tunnel host gets a 404 page (the API stays on its own port).
   */
  private async startTls(): Promise<void> {
    const { proxyTlsCert, proxyTlsKey, proxyTlsPort, host } = this.deps.config;
    if (!proxyTlsCert || !proxyTlsKey) return;
    let cert: Buffer;
    let key: Buffer;
    try {
      cert = readFileSync(proxyTlsCert);
      key = readFileSync(proxyTlsKey);
    } catch (error) {
      throw new Error(`CORRAL_PROXY_TLS_CERT/KEY: cannot read ${proxyTlsCert} or ${proxyTlsKey}: ${(error as Error).message}`);
    }
    const server = createHttpsServer({ cert, key });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (!this.routeRequest(req, res)) sendErrorPage(res, 404, 'Not Found', 'No exposure or tunnel answers for this host name');
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!this.routeUpgrade(req, socket, head)) refuseUpgradeWithPage(socket, 404, 'Not Found', 'No exposure or tunnel answers for this host name');
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(proxyTlsPort, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.tlsServer = server;
  }

  /** The port of the HTTPS listener, when TLS is configured. */
  get tlsPort(): number | null {
    const address = this.tlsServer?.address();
    return address && typeof address === 'object' ? address.port : null;
  }

  /** Stops every listener and connection this service holds. Sandboxes and stored rows are left alone. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribeAccess();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.tlsServer) {
      const tls = this.tlsServer;
      tls.closeAllConnections();
      await new Promise<void>((resolve) => tls.close(() => resolve()));
    }
    await this.sweeping;
    for (const set of this.streams.values()) for (const s of set) s.destroy();
    this.streams.clear();
    await Promise.all([...this.tcp.values()].map((f) => f.close()));
    this.tcp.clear();
    await this.ssh.close();
    this.tunnels.close();
  }

  /**
   * Removes what belongs to ended sandboxes and expired sessions and tunnels: stored exposures and
   * SSH sessions, their listeners and open connections. Also ends what access was taken away from:
   * SSH sessions and tunnels whose API key is revoked or whose user is gone, live SSH connections
   * whose key or user may no longer use the sandbox, tunnel links bound with a revoked key. Runs on
   * a timer (the backstop for changes made on other replicas), right after an access change in this
   * process, and the reconciler may call it right after a sandbox ends.
   */
  async cleanup(): Promise<void> {
    if (this.sweeping) return this.sweeping;
    this.sweeping = (async () => {
      const now = new Date().toISOString();
      const purged = await this.deps.store.purgeNetworkOfEndedSandboxes(now);
      for (const id of purged.exposureIds) await this.closeExposure(id);
      for (const id of purged.sshSessionIds) this.ssh.closeSession(id);
      for (const id of await this.deps.store.expireTunnels(now)) this.tunnels.closeLink(id, 4410, 'tunnel expired');
      const revoked = await this.deps.store.purgeRevokedNetworkAccess();
      for (const id of revoked.sshSessionIds) this.ssh.closeSession(id);
      for (const id of revoked.tunnelIds) this.tunnels.closeLink(id, LINK_CLOSE.NOT_FOUND, 'tunnel access revoked');
      await this.ssh.revalidate();
      await this.tunnels.revalidate();
      await this.syncTcpListeners();
    })().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  // ---- exposures ----

  /** Exposes a port of a sandbox the caller may use. */
  async expose(
    sandbox: SandboxRecord,
    input: { port: number; name: string | null; protocol: ExposureProtocol; auth: 'none' | 'token' },
    base: string,
    actor: SandboxEventActor | null = null,
  ): Promise<ExposureView> {
    if (isTerminal(sandbox.status)) throw new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${sandbox.id} is ${sandbox.status}; its ports can no longer be exposed`);
    if (input.protocol === 'TCP' && input.auth === 'token') throw ApiError.invalid('auth', 'TCP exposures carry raw bytes and cannot check a token; use HTTP');
    const record: ExposureRecord = {
      id: randomUUID(),
      sandboxId: sandbox.id,
      userId: sandbox.userId,
      port: input.port,
      name: input.name,
      protocol: input.protocol,
      externalPort: null,
      accessToken: input.auth === 'token' ? randomBytes(24).toString('base64url') : null,
      createdAt: new Date().toISOString(),
    };
    if (record.protocol === 'TCP') {
      const forwarder = await this.allocateTcp(record);
      record.externalPort = forwarder.port;
      try {
        await this.deps.store.insertExposure(record);
      } catch (error) {
        this.tcp.delete(record.id);
        await forwarder.close();
        throw error;
      }
    } else {
      await this.deps.store.insertExposure(record);
    }
    this.deps.events?.record(
      sandbox.id,
      'exposure.created',
      { exposureId: record.id, port: record.port, protocol: record.protocol, externalPort: record.externalPort, auth: input.auth },
      actor,
    );
    return { ...this.view(record, base), ...(record.accessToken ? { access_token: record.accessToken } : {}) };
  }

  /** The exposures of these sandboxes. */
  async list(sandboxIds: readonly string[], base: string): Promise<ExposureView[]> {
    const records = await this.deps.store.listExposures(sandboxIds);
    return records.map((r) => this.view(r, base));
  }

  /** Removes an exposure of this sandbox and cuts its open connections. */
  async unexpose(sandboxId: string, exposureId: string, actor: SandboxEventActor | null = null): Promise<void> {
    const record = await this.deps.store.getExposure(exposureId);
    if (!record || record.sandboxId !== sandboxId) throw new ApiError('EXPOSURE_NOT_FOUND', `Exposure ${exposureId} not found`);
    if (await this.deps.store.deleteExposure(exposureId)) {
      this.deps.events?.record(sandboxId, 'exposure.deleted', { exposureId, port: record.port, protocol: record.protocol }, actor);
    }
    await this.closeExposure(exposureId);
  }

  /** The base URL (`http://host:port`) exposure and tunnel URLs are built on, from the API request's view. */
  proxyBase(requestHost: string): { scheme: string; port: string } {
    if (this.deps.config.publicUrl) {
      const url = new URL(this.deps.config.publicUrl);
      return { scheme: url.protocol.replace(':', ''), port: url.port };
    }
    const address = this.server?.address();
    const listening = typeof address === 'object' && address ? String(address.port) : null;
    const fromHost = /:(\d+)$/.exec(requestHost)?.[1] ?? null;
    const port = listening ?? fromHost ?? String(this.deps.config.port);
    return { scheme: 'http', port: port === '80' ? '' : port };
  }

  /** `http://<label>.<domain>[:port]`. */
  hostUrl(label: string, base: string): string {
    const { scheme, port } = this.proxyBase(base);
    return `${scheme}://${label}${this.domainSuffix}${port ? `:${port}` : ''}`;
  }

  /** The host name clients use for TCP exposures and SSH. */
  networkHost(): string {
    if (this.deps.config.networkHost) return this.deps.config.networkHost;
    if (this.deps.config.publicUrl) return new URL(this.deps.config.publicUrl).hostname;
    const host = this.deps.config.host;
    return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  }

  private view(r: ExposureRecord, base: string): ExposureView {
    const host = this.networkHost();
    const tls = this.deps.config.proxyTlsCert && this.deps.config.proxyTlsKey ? `${r.id}${this.domainSuffix}:${this.tlsPort ?? this.deps.config.proxyTlsPort}` : '';
    return {
      exposure_id: r.id,
      sandbox_id: r.sandboxId,
      port: r.port,
      name: r.name,
      protocol: r.protocol,
      url: r.protocol === 'TCP' ? `tcp://${host}:${r.externalPort ?? 0}` : `${this.hostUrl(r.id, base)}/`,
      tls_socket: r.protocol === 'TCP' ? '' : tls,
      external_port: r.externalPort,
      external_endpoint: r.protocol === 'TCP' ? `${host}:${r.externalPort ?? 0}` : null,
      created_at: r.createdAt,
      auth: r.accessToken ? 'token' : 'none',
    };
  }

  private async closeExposure(id: string): Promise<void> {
    const forwarder = this.tcp.get(id);
    this.tcp.delete(id);
    for (const stream of this.streams.get(id) ?? []) stream.destroy();
    this.streams.delete(id);
    await forwarder?.close();
  }

  private track(exposureId: string, stream: Duplex): void {
    let set = this.streams.get(exposureId);
    if (!set) {
      set = new Set();
      this.streams.set(exposureId, set);
    }
    set.add(stream);
    stream.once('close', () => {
      set.delete(stream);
      if (set.size === 0 && this.streams.get(exposureId) === set) this.streams.delete(exposureId);
    });
  }

  private async allocateTcp(record: ExposureRecord): Promise<TcpForwarder> {
    const { from, to } = parsePortRange(this.deps.config.tcpPortRange);
    const used = new Set((await this.deps.store.listExposures(null)).map((e) => e.externalPort));
    for (const f of this.tcp.values()) used.add(f.port);
    for (let port = from; port <= to; port++) {
      if (used.has(port)) continue;
      try {
        const forwarder = await listenTcp(this.deps.config.host, port, (socket) => this.forwardTcp(record.id, socket));
        this.tcp.set(record.id, forwarder);
        return forwarder;
      } catch {
        // Taken by something else on the host: try the next one.
      }
    }
    throw new ApiError('CONFLICT', `No free TCP port left in ${this.deps.config.tcpPortRange} for a TCP exposure`);
  }

  private restoreTcpListeners(): Promise<void> {
    return this.syncTcpListeners();
  }

  /**
   * Listens for the stored TCP exposures of live sandboxes that have no listener in this process
   * yet (at startup, and on each sweep: exposures another replica created), and closes the
   * listeners whose exposure is gone (deleted through another replica). A port this process cannot
   * listen on (taken, e.g. by another replica on the same host) is warned about once, not retried.
   */
  private async syncTcpListeners(): Promise<void> {
    const records = (await this.deps.store.listExposures(null)).filter((e) => e.protocol === 'TCP' && e.externalPort !== null);
    const stored = new Set(records.map((r) => r.id));
    // Only listeners whose exposure an earlier sync saw stored: one being created here is not stored yet.
    for (const id of [...this.tcp.keys()]) if (!stored.has(id) && this.tcpSeenStored.has(id)) await this.closeExposure(id);
    this.tcpSeenStored = stored;
    const missing = records.filter((r) => !this.tcp.has(r.id) && !this.tcpListenFailed.has(r.id));
    if (missing.length === 0) return;
    const live = await this.deps.sandboxAccess.liveHere([...new Set(missing.map((r) => r.sandboxId))]);
    for (const record of missing) {
      if (!live.has(record.sandboxId) || this.tcp.has(record.id)) continue;
      try {
        this.tcp.set(record.id, await listenTcp(this.deps.config.host, record.externalPort as number, (socket) => this.forwardTcp(record.id, socket)));
      } catch (error) {
        this.tcpListenFailed.add(record.id);
        this.deps.log.warn({ err: error, exposureId: record.id, port: record.externalPort }, 'network: cannot listen for a TCP exposure');
      }
    }
  }

  private forwardTcp(exposureId: string, socket: Socket): void {
    this.resolveExposureTarget(exposureId).then(
      async (target) => {
        if (typeof target === 'string') {
          socket.destroy();
          return;
        }
        const upstream = await target.dial();
        this.track(exposureId, upstream);
        this.track(exposureId, socket);
        upstream.on('error', () => socket.destroy());
        socket.on('error', () => upstream.destroy());
        upstream.on('close', () => socket.destroy());
        socket.on('close', () => upstream.destroy());
        upstream.pipe(socket);
        socket.pipe(upstream);
      },
      () => socket.destroy(),
    ).catch(() => socket.destroy());
  }

  /** The running sandbox behind an exposure, or a reason it cannot be reached (as text). */
  private async resolveExposureTarget(exposureId: string, record?: ExposureRecord): Promise<{ dial: Dialer; describe: string } | string> {
    const exposure = record ?? (await this.deps.store.getExposure(exposureId));
    if (!exposure) return 'gone';
    const state = await this.deps.sandboxAccess.open(exposure.sandboxId);
    switch (state.kind) {
      case 'missing':
      case 'ended':
        await this.deps.store.deleteExposure(exposureId);
        await this.closeExposure(exposureId);
        return 'gone';
      case 'not-running':
      case 'no-container':
        return `Sandbox ${state.sandboxId} is ${state.status}, not RUNNING yet`;
      case 'no-runtime':
        return 'This server has no runtime driver to reach sandboxes';
      case 'running': {
        const { runtime, runtimeId, sandboxId } = state.handle;
        return { dial: () => runtime.dial(runtimeId, exposure.port), describe: `port ${exposure.port} of sandbox ${sandboxId}` };
      }
    }
  }

  // ---- Host routing ----

  /** The `<label>` of a Host `<label>.<proxyDomain>[:port]`, or null when the request is for the API. */
  private hostLabel(req: IncomingMessage): string | null {
    const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
    if (!host.endsWith(this.domainSuffix)) return null;
    const label = host.slice(0, -this.domainSuffix.length);
    return /^[a-z0-9][a-z0-9-]{0,62}$/.test(label) ? label : null;
  }

  private routeRequest(req: IncomingMessage, res: ServerResponse): boolean {
    const label = this.hostLabel(req);
    if (label === null) return false;
    res.on('error', () => undefined);
    const handle = label.startsWith('t-') ? this.tunnels.serveHttp(label, req, res) : this.serveExposure(label, req, res, null);
    handle.catch((error: unknown) => {
      this.deps.log.error({ err: error }, 'network: proxy request failed');
      sendErrorPage(res, 500, 'Internal Server Error', 'The proxy failed; the server log has the details');
    });
    return true;
  }

  private routeUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const label = this.hostLabel(req);
    if (label === null) {
      const tunnelId = /^\/api\/v1\/tunnel\/([^/?#]+)\/connect\/?(?:\?.*)?$/.exec(req.url ?? '')?.[1];
      if (tunnelId === undefined) return false;
      this.tunnels.acceptLink(decodeURIComponent(tunnelId), req, socket, head);
      return true;
    }
    socket.on('error', () => undefined);
    const handle = label.startsWith('t-') ? this.tunnels.serveUpgrade(label, req, socket, head) : this.serveExposure(label, req, null, { socket, head });
    handle.catch((error: unknown) => {
      this.deps.log.error({ err: error }, 'network: proxy upgrade failed');
      socket.destroy();
    });
    return true;
  }

  private async serveExposure(id: string, req: IncomingMessage, res: ServerResponse | null, upgrade: { socket: Duplex; head: Buffer } | null): Promise<void> {
    const fail = (status: number, title: string, detail: string, headers: Record<string, string> = {}): void => {
      if (res) sendErrorPage(res, status, title, detail, headers);
      else if (upgrade) refuseUpgradeWithPage(upgrade.socket, status, title, detail);
    };
    const record = await this.deps.store.getExposure(id);
    if (!record || record.protocol !== 'HTTP') return fail(404, 'Not Found', `No HTTP exposure ${id} on this server`);
    let path = req.url ?? '/';
    let setCookie: string | null = null;
    if (record.accessToken) {
      const url = new URL(path, 'http://x');
      const fromQuery = url.searchParams.get(TOKEN_QUERY);
      const given = (req.headers[TOKEN_HEADER] as string | undefined) ?? fromQuery ?? cookie(req, TOKEN_COOKIE);
      if (!given) return fail(401, 'Unauthorized', `This exposure is private: send the ${TOKEN_HEADER} header or ?${TOKEN_QUERY}=<token>`);
      if (!sameSecret(given, record.accessToken)) return fail(403, 'Forbidden', 'The exposure token is wrong');
      if (fromQuery !== null) {
        url.searchParams.delete(TOKEN_QUERY);
        path = `${url.pathname}${url.search}`;
        setCookie = `${TOKEN_COOKIE}=${fromQuery}; Path=/; HttpOnly; SameSite=Lax`;
      }
    }
    const target = await this.resolveExposureTarget(id, record);
    if (target === 'gone') return fail(404, 'Not Found', `Exposure ${id} has ended with its sandbox`);
    if (typeof target === 'string') return fail(503, 'Service Unavailable', target, { 'retry-after': '2' });
    const proxyTarget = { ...target, path, track: (s: Duplex) => this.track(id, s) };
    if (upgrade) {
      this.track(id, upgrade.socket);
      proxyUpgrade(req, upgrade.socket, upgrade.head, proxyTarget);
    } else if (res) {
      if (setCookie) res.setHeader('set-cookie', setCookie);
      proxyHttp(req, res, proxyTarget);
    }
  }

  // ---- SSH sessions ----

  /** Opens an SSH session on a sandbox; the SSH server starts listening with the first session. */
  async createSshSession(caller: Principal, sandbox: SandboxRecord, ttlSeconds: number, base: string): Promise<Record<string, string | number>> {
    if (sandbox.status !== 'RUNNING') throw new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${sandbox.id} is ${sandbox.status}; SSH needs it RUNNING`);
    const port = await this.ssh.ensureListening();
    const now = Date.now();
    const session = {
      id: `ssh-${randomBytes(10).toString('hex')}`,
      sandboxId: sandbox.id,
      userId: sandbox.userId,
      exposureId: randomUUID(),
      ttlSeconds,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + ttlSeconds * 1000).toISOString(),
      apiKeyId: caller.apiKeyId,
    };
    await this.deps.store.insertSshSession(session);
    this.deps.events?.record(sandbox.id, 'ssh.session_created', { sessionId: session.id, ttlSeconds }, { userId: caller.user.id, keyId: caller.apiKeyId });
    const { token } = this.deps.tokens.issue(sandbox.id, caller.user.id, caller.apiKeyId);
    const host = this.networkHost();
    return {
      session_id: session.id,
      exposure_id: session.exposureId,
      sandbox_id: sandbox.id,
      host,
      port,
      external_endpoint: `${host}:${port}`,
      expires_at: session.expiresAt,
      ttl_seconds: ttlSeconds,
      gateway_url: `${base}/gateway`,
      user_ns: sandbox.userId,
      job_id: sandbox.id,
      token,
    };
  }

  /** Ends an SSH session of this sandbox and closes its connections. */
  async closeSshSession(sandboxId: string, sessionId: string, actor: SandboxEventActor | null = null): Promise<void> {
    const session = await this.deps.store.getSshSession(sessionId);
    if (!session || session.sandboxId !== sandboxId) throw new ApiError('SSH_SESSION_NOT_FOUND', `SSH session ${sessionId} not found`);
    if (await this.deps.store.deleteSshSession(sessionId)) this.deps.events?.record(sandboxId, 'ssh.session_deleted', { sessionId }, actor);
    this.ssh.closeSession(sessionId);
  }
}

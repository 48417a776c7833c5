import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { keepAlive } from '../util/ws-heartbeat.js';
import { SocketLikeDuplex } from '../util/socket-like-duplex.js';
import type { FastifyBaseLogger } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import { ApiError } from '../errors/api-error.js';
import type { AccessChecker } from '../services/access-checker.js';
import type { AuthService, Principal } from '../services/auth-service.js';
import { proxyHttp, proxyUpgrade, refuseUpgradeWithPage, sendErrorPage } from './http-proxy.js';
import type { TunnelRecords } from './network-deps.js';
import type { TunnelFilter, TunnelRecord, TunnelStatus } from '../records/network-records.js';
import { FRAME, LINK_CLOSE, decodeFrame, encodeFrame, type FrameOp } from './tunnel-frames.js';

/** What the tunnel hub needs. */
export interface TunnelHubDeps {
  store: TunnelRecords;
  auth: AuthService;
  /** Whether the key a link was bound with is still live. */
  access: AccessChecker;
  log: FastifyBaseLogger;
}

/** Header carrying the binding secret when a tunnel client connects. */
export const BINDING_SECRET_HEADER = 'x-corral-binding-secret';

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The status a client sees: `expired` once past `expiresAt`, whatever was stored. */
export function effectiveStatus(tunnel: TunnelRecord, now = Date.now()): TunnelStatus {
  return Date.parse(tunnel.expiresAt) <= now ? 'expired' : tunnel.status;
}

/** One stream (one proxied connection) inside a tunnel link. */
class TunnelStream extends SocketLikeDuplex {
  /** The client sent END: everything it will send has arrived. */
  remoteEnded = false;

  constructor(
    private readonly link: TunnelLink,
    readonly id: number,
  ) {
    super({ allowHalfOpen: true });
  }
  override _read(): void {
    // Data is pushed as frames arrive.
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.link.send(FRAME.DATA, this.id, chunk, callback);
  }
  override _final(callback: (error?: Error | null) => void): void {
    this.link.send(FRAME.END, this.id);
    callback();
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.link.streams.delete(this.id) && !(this.readableEnded && this.writableFinished)) this.link.send(FRAME.RESET, this.id);
    callback(error);
  }
}

/** A connected tunnel client: one WebSocket multiplexing many streams. */
class TunnelLink {
  readonly streams = new Map<number, TunnelStream>();
  private nextId = 1;

  constructor(
    readonly ws: WebSocket,
    /** The API key the client bound the link with. */
    readonly apiKeyId: string,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      const frame = decodeFrame(data);
      if (!frame) return;
      const stream = this.streams.get(frame.streamId);
      if (!stream) return;
      if (frame.op === FRAME.DATA) stream.push(frame.payload);
      else if (frame.op === FRAME.END) {
        stream.remoteEnded = true;
        stream.push(null);
      } else if (frame.op === FRAME.RESET) {
        this.streams.delete(frame.streamId);
        // After END the data is complete: let the reader drain what is buffered rather than fail it.
        if (stream.remoteEnded && frame.payload.length === 0) return;
        stream.destroy(new Error(frame.payload.length > 0 ? frame.payload.toString('utf8') : 'connection reset by the tunnel client'));
      }
    });
    ws.once('close', () => {
      for (const stream of this.streams.values()) stream.destroy(new Error('tunnel link closed'));
      this.streams.clear();
    });
  }

  open(): TunnelStream {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const stream = new TunnelStream(this, id);
    this.streams.set(id, stream);
    this.send(FRAME.OPEN, id);
    return stream;
  }

  send(op: FrameOp, id: number, payload?: Buffer, callback?: (error?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      callback?.(new Error('tunnel link closed'));
      return;
    }
    this.ws.send(encodeFrame(op, id, payload), { binary: true }, (error) => callback?.(error ?? null));
  }
}

/**
 * Reverse tunnels: the API side (create, list, delete) and the data side. A tunnel client
 * (`corral tunnel start`) holds one WebSocket to `/api/v1/tunnel/{id}/connect`, authenticated by
 * the owner's API key and the tunnel's binding secret; each HTTP request or WebSocket for
 * `<tunnel id>.<proxy domain>` becomes one stream over it, which the client connects to its local port.
 */
export class TunnelHub {
  private readonly links = new Map<string, TunnelLink>();
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024, perMessageDeflate: false });

  constructor(private readonly deps: TunnelHubDeps) {}

  /** Creates a tunnel; the binding secret, frp token and basic-auth password are only returned here. */
  async create(
    caller: Principal,
    input: { name: string | null; localPort: number; teamId: string | null; labels: string[]; httpUser: string | null },
    ttlSeconds: number,
    maxPerUser: number,
  ): Promise<{ tunnel: TunnelRecord; bindingSecret: string; frpToken: string; httpPassword: string | null }> {
    const mine = await this.deps.store.listTunnels({ userId: caller.user.id }, 1, 1);
    const active = (await this.deps.store.listTunnels({ userId: caller.user.id }, 1, Math.max(1, mine.total))).tunnels.filter(
      (t) => effectiveStatus(t) !== 'expired',
    ).length;
    if (active >= maxPerUser) {
      // Prime answers 400 here; its SDK maps a 400 mentioning "maximum number of" to TunnelLimitReachedError.
      throw new ApiError('TUNNEL_LIMIT_REACHED', `You have reached the maximum number of tunnels (${maxPerUser}); delete one first`);
    }
    const bindingSecret = randomBytes(24).toString('base64url');
    const httpPassword = input.httpUser ? randomBytes(12).toString('base64url') : null;
    const now = Date.now();
    const tunnel: TunnelRecord = {
      id: `t-${randomBytes(8).toString('hex')}`,
      userId: caller.user.id,
      teamId: input.teamId,
      name: input.name,
      localPort: input.localPort,
      labels: input.labels,
      httpUser: input.httpUser,
      httpPasswordHash: httpPassword ? sha256(httpPassword) : null,
      bindingSecretHash: sha256(bindingSecret),
      status: 'pending',
      createdAt: new Date(now).toISOString(),
      connectedAt: null,
      expiresAt: new Date(now + ttlSeconds * 1000).toISOString(),
      terminatedAt: null,
      apiKeyId: caller.apiKeyId,
    };
    await this.deps.store.insertTunnel(tunnel);
    return { tunnel, bindingSecret, frpToken: randomBytes(24).toString('base64url'), httpPassword };
  }

  /** A tunnel the caller may see (own, or of a team they belong to); throws TUNNEL_NOT_FOUND. */
  async get(caller: Principal, id: string): Promise<TunnelRecord> {
    const tunnel = await this.deps.store.getTunnel(id);
    if (!tunnel || !(tunnel.userId === caller.user.id || (tunnel.teamId !== null && caller.teams.has(tunnel.teamId)))) {
      throw new ApiError('TUNNEL_NOT_FOUND', `Tunnel ${id} not found`);
    }
    return tunnel;
  }

  /** One page of tunnels: the caller's own, or a team's when `filter.teamId` is set. */
  list(filter: TunnelFilter, page: number, perPage: number): Promise<{ tunnels: TunnelRecord[]; total: number }> {
    return this.deps.store.listTunnels(filter, page, perPage);
  }

  /** Deletes a tunnel the caller owns and drops its link. */
  async delete(caller: Principal, id: string): Promise<void> {
    const tunnel = await this.deps.store.getTunnel(id);
    if (!tunnel || tunnel.userId !== caller.user.id) throw new ApiError('TUNNEL_NOT_FOUND', `Tunnel ${id} not found`);
    await this.deps.store.deleteTunnel(id);
    this.closeLink(id, LINK_CLOSE.NOT_FOUND, 'tunnel deleted');
  }

  /** Whether a client is connected for this tunnel on this server. */
  isConnected(id: string): boolean {
    return this.links.has(id);
  }

  /** Closes a tunnel's link (deleted, expired); the client does not reconnect on these codes. */
  closeLink(id: string, code: number, reason: string): void {
    const link = this.links.get(id);
    if (!link) return;
    this.links.delete(id);
    link.ws.close(code, reason);
    setTimeout(() => link.ws.terminate(), 2000).unref();
  }

  /** Closes the links bound with an API key that is now revoked or whose user is gone. */
  async revalidate(): Promise<void> {
    for (const [id, link] of [...this.links]) {
      if ((await this.deps.access.keyHolder(link.apiKeyId)) === null) this.closeLink(id, LINK_CLOSE.FORBIDDEN, 'the API key of this tunnel client was revoked');
    }
  }

  /** Drops every link. */
  close(): void {
    for (const link of this.links.values()) link.ws.terminate();
    this.links.clear();
    this.wss.close();
  }

  /** Handles the tunnel client's WebSocket upgrade on `/api/v1/tunnel/{id}/connect`. */
  acceptLink(tunnelId: string, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const refuse = (status: number, detail: string): void => {
      const body = JSON.stringify({ detail });
      socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    };
    const key = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    this.deps.auth
      .authenticate(key)
      .then(async (principal) => {
        const tunnel = await this.deps.store.getTunnel(tunnelId);
        if (!tunnel || tunnel.userId !== principal.user.id) return refuse(404, `Tunnel ${tunnelId} not found`);
        const secret = req.headers[BINDING_SECRET_HEADER];
        if (typeof secret !== 'string' || !sameHash(sha256(secret), tunnel.bindingSecretHash)) return refuse(403, 'Wrong binding secret for this tunnel');
        if (effectiveStatus(tunnel) === 'expired') return refuse(410, `Tunnel ${tunnelId} has expired`);
        this.wss.handleUpgrade(req, socket, head, (ws) => this.bind(tunnel, ws, principal.apiKeyId));
      })
      .catch((error: unknown) => refuse(error instanceof ApiError ? 401 : 500, error instanceof Error ? error.message : 'refused'));
  }

  private bind(tunnel: TunnelRecord, ws: WebSocket, apiKeyId: string): void {
    const previous = this.links.get(tunnel.id);
    if (previous) previous.ws.close(LINK_CLOSE.REPLACED, 'another client bound this tunnel');
    const link = new TunnelLink(ws, apiKeyId);
    this.links.set(tunnel.id, link);
    ws.on('error', () => undefined);
    keepAlive(ws, 15_000);
    void this.deps.store.updateTunnel(tunnel.id, { status: 'connected', connectedAt: new Date().toISOString() }).catch(() => undefined);
    ws.once('close', () => {
      if (this.links.get(tunnel.id) !== link) return;
      this.links.delete(tunnel.id);
      void this.deps.store
        .getTunnel(tunnel.id)
        .then((t) => (t && effectiveStatus(t) !== 'expired' ? this.deps.store.updateTunnel(t.id, { status: 'disconnected' }) : undefined))
        .catch(() => undefined);
    });
  }

  /** Checks a request for `<id>.<domain>`: the tunnel exists, is live, connected, and basic auth matches. */
  private async target(id: string, req: IncomingMessage): Promise<{ link: TunnelLink; tunnel: TunnelRecord } | { status: number; title: string; detail: string; headers?: Record<string, string> }> {
    const tunnel = await this.deps.store.getTunnel(id);
    if (!tunnel) return { status: 404, title: 'Not Found', detail: `No tunnel ${id} on this server` };
    if (effectiveStatus(tunnel) === 'expired') return { status: 410, title: 'Gone', detail: `Tunnel ${id} has expired` };
    if (tunnel.httpUser && tunnel.httpPasswordHash) {
      const match = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
      const [user, ...rest] = match ? Buffer.from(match[1] as string, 'base64').toString('utf8').split(':') : [];
      if (user !== tunnel.httpUser || !sameHash(sha256(rest.join(':')), tunnel.httpPasswordHash)) {
        return { status: 401, title: 'Unauthorized', detail: 'This tunnel needs HTTP basic auth', headers: { 'www-authenticate': `Basic realm="${id}"` } };
      }
    }
    const link = this.links.get(id);
    if (!link) return { status: 502, title: 'Bad Gateway', detail: `Tunnel ${id} has no client connected; run \`corral tunnel start\` on the machine serving it` };
    return { link, tunnel };
  }

  /** Serves an HTTP request for a tunnel hostname through its link. */
  async serveHttp(id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = await this.target(id, req);
    if ('status' in target) return sendErrorPage(res, target.status, target.title, target.detail, target.headers);
    const { link, tunnel } = target;
    proxyHttp(req, res, { dial: async () => link.open(), describe: `local port ${tunnel.localPort} behind tunnel ${id}` });
  }

  /** Serves a WebSocket (or other upgrade) for a tunnel hostname through its link. */
  async serveUpgrade(id: string, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const target = await this.target(id, req);
    if ('status' in target) return refuseUpgradeWithPage(socket, target.status, target.title, target.detail);
    const { link, tunnel } = target;
    proxyUpgrade(req, socket, head, { dial: async () => link.open(), describe: `local port ${tunnel.localPort} behind tunnel ${id}` });
  }
}

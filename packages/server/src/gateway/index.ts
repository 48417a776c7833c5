import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import { registerConnectRoutes } from './connect/connect-routes.js';
import { registerExecRoute } from './exec-route.js';
import { registerFileRoutes } from './file-routes.js';
import { type GatewayContext, type GatewayParams, targetOf } from './gateway-context.js';
import { FairScheduler } from './fair-scheduler.js';
import type { GatewayDeps } from './gateway-deps.js';
import type { LiveGrants } from './live-grants.js';
import { GatewayError, retryAfterOf, tooManyRequests } from '../errors/gateway-error.js';
import { sendFrameworkRejection, sendGatewayError } from './gateway-reply.js';
import { type GatewayTarget, bearerToken, resolveTarget } from './gateway-target.js';
import { OutputBudget } from './output-budget.js';
import { UserRateLimit } from './user-rate-limit.js';
import { runStreamSession } from './stream-session.js';
import { keepAlive } from '../util/ws-heartbeat.js';

const STREAM_PATH = /^\/gateway\/([^/?#]+)\/([^/?#]+)\/stream\/?(?:\?.*)?$/;

/**
 * Registers the data-plane gateway under `/gateway/:user_ns/:job_id/…` (`app` is an
 * encapsulated plugin with prefix `/gateway`): `exec`, `upload`, `download`, `read-file`,
 * `authorize` (SSH keys) and the streaming-exec WebSocket `stream`. Every route checks the
 * gateway token and the sandbox's state first; every error is a JSON object
 * `{error, message, code}`. Open work is tracked in `deps.liveGrants`, which its owner starts and stops.
 */
export async function registerGateway(app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  const config = deps.config;
  const ctx: GatewayContext = {
    access: deps.sandboxAccess,
    config,
    slots: new FairScheduler('exec', {
      global: config.maxConcurrentExecs,
      perUser: config.maxExecsPerUser,
      perSandbox: config.maxExecsPerSandbox,
      perCpu: config.execsPerCpu,
      maxQueuedPerUser: config.maxQueuedPerUser,
    }, (ms) => deps.metrics.gatewayWaitSeconds.observe({ pool: 'exec' }, ms / 1000)),
    sessions: new FairScheduler('session', {
      global: config.maxConcurrentExecs,
      perUser: config.maxSessionsPerUser,
      perSandbox: config.maxSessionsPerSandbox,
      maxQueuedPerUser: config.maxQueuedPerUser,
    }, (ms) => deps.metrics.gatewayWaitSeconds.observe({ pool: 'session' }, ms / 1000)),
    metrics: deps.metrics,
    events: deps.events,
    outputBudget: new OutputBudget(config.execOutputBudgetBytes, config.execOutputBudgetPerUserBytes),
  };
  deps.metrics.sources.gatewayQueues = () => ({ exec: ctx.slots.queued, session: ctx.sessions.queued });
  // Access taken away (a revoked key, a deleted user, a lost team role) cuts what is already open.
  const live = deps.liveGrants;
  const rateLimit = config.rateLimits ? new UserRateLimit(config.gatewayRateLimit, config.gatewayRateBurst) : null;
  /** Counts a request against its sandbox owner's gateway rate; throws 429 over it. */
  const countRequest = (target: GatewayTarget): void => {
    const decision = rateLimit?.hit(target.userId);
    if (decision && !decision.allowed) {
      throw tooManyRequests(
        `Too Many Requests: over ${config.gatewayRateLimit} gateway requests per second for this user; retry after ${decision.retryAfterSeconds}s`,
        decision.retryAfterSeconds,
      );
    }
  };

  // The gateway's own body parsers: JSON keeps its source text (exec tells `10` from `10.0`),
  // multipart is left unread for the upload route to stream, anything else is read and ignored.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const raw = typeof body === 'string' ? body : body.toString('utf8');
    if (raw.trim() === '') {
      done(null, undefined);
      return;
    }
    try {
      done(null, { raw, value: JSON.parse(raw) as unknown });
    } catch {
      done(new GatewayError('invalid_json', 'The request body is not valid JSON'), undefined);
    }
  });
  app.addContentTypeParser('multipart/form-data', (_request, _payload, done) => done(null, undefined));
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 1024 * 1024 }, (_request, _body, done) => done(null, undefined));

  app.setErrorHandler((error: FastifyError | GatewayError, request, reply) => {
    if (error instanceof GatewayError) return sendGatewayError(reply, error);
    const status = error.statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      return sendFrameworkRejection(reply, status, error.code, error.message);
    }
    // A client that went away mid-answer (a streamed exec answer or download cut short) is not a
    // server error, and there is nobody left to answer.
    if (error.code === 'ERR_STREAM_PREMATURE_CLOSE' || request.raw.socket?.destroyed === true || reply.raw.destroyed) {
      request.log.debug({ err: error }, 'gateway: the client went away');
      return reply;
    }
    request.log.error({ err: error }, 'gateway: unhandled error');
    return sendGatewayError(reply, new GatewayError('internal_error', `Internal error (request ${request.id}); the server log has the details`));
  });

  // The data plane is not part of the management API's OpenAPI document (Prime's has none either).
  app.addHook('onRoute', (route) => {
    route.schema = { ...(route.schema ?? {}), hide: true };
  });

  app.decorateRequest('gatewayTarget', null);
  app.addHook('onRequest', async (request, reply) => {
    if (request.is404) return;
    const params = request.params as Partial<GatewayParams>;
    if (params.user_ns === undefined || params.job_id === undefined) return;
    const target = await resolveTarget(deps.sandboxAccess, params.user_ns, params.job_id, bearerToken(request.headers.authorization));
    countRequest(target);
    request.gatewayTarget = target;
    // Tracked until the exchange ends; cutting destroys the socket, which ends the call (an exec's
    // process is killed as for a client that went away) and anything else on that connection.
    const untrack = live.track(target.grant, () => request.raw.socket?.destroy());
    reply.raw.once('close', untrack);
  });

  registerExecRoute(app, ctx);
  registerFileRoutes(app, ctx);
  registerConnectRoutes(app, ctx); // Connect-RPC command_session.CommandSession (docs/connect-rpc.md)
  // SSH sessions: admits a public key for one session of this sandbox (docs/networking.md).
  app.post<{ Params: GatewayParams }>('/:user_ns/:job_id/authorize', { config: { public: true } }, async (request) => {
    const target = targetOf(request);
    if (!deps.sshKeys) throw new GatewayError('not_implemented', 'SSH sessions are not served by this server');
    // Refusals are GatewayErrors (`bad_request`, `ssh_session_not_found`) with the registry's statuses.
    return deps.sshKeys.authorize(target.sandboxId, (request.body as { value?: unknown } | undefined)?.value);
  });
  app.get<{ Params: GatewayParams }>('/:user_ns/:job_id/stream', { config: { public: true } }, async () => {
    throw new GatewayError('upgrade_required', 'This endpoint speaks WebSocket: connect with Upgrade: websocket (docs/streaming-exec.md)');
  });

  registerStreamUpgrade(app, ctx, countRequest, live);
}

/** Answers an upgrade request with a plain HTTP error and closes the socket. */
function refuseUpgrade(socket: Duplex, error: GatewayError): void {
  const body = JSON.stringify(error.body());
  const reason =
    { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 409: 'Conflict', 429: 'Too Many Requests', 502: 'Bad Gateway', 503: 'Service Unavailable' }[error.status] ?? 'Error';
  const retryAfter = retryAfterOf(error);
  socket.end(
    `HTTP/1.1 ${error.status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `${retryAfter !== undefined ? `Retry-After: ${retryAfter}\r\n` : ''}Connection: close\r\n\r\n${body}`,
  );
}

/**
 * Serves `GET /gateway/:user_ns/:job_id/stream` WebSocket upgrades from the HTTP server's
 * `upgrade` event with `ws` in noServer mode. The token comes from `Authorization: Bearer` or,
 * for browsers, `?token=`. Open sessions are closed (and their processes killed unless detached)
 * when the server closes.
 */
function registerStreamUpgrade(app: FastifyInstance, ctx: GatewayContext, countRequest: (target: GatewayTarget) => void, live: LiveGrants): void {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024, perMessageDeflate: false });
  const sockets = new Set<WebSocket>();
  let closing = false;

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const match = STREAM_PATH.exec(request.url ?? '');
    if (!match) {
      // Not ours. With nobody else listening, nobody would ever answer: refuse it.
      if (app.server.listenerCount('upgrade') === 1) refuseUpgrade(socket, new GatewayError('not_found', 'No WebSocket endpoint here'));
      return;
    }
    socket.on('error', () => undefined);
    if (closing) {
      refuseUpgrade(socket, new GatewayError('shutting_down', 'The server is shutting down'));
      return;
    }
    let userNs: string;
    let jobId: string;
    try {
      userNs = decodeURIComponent(match[1] as string);
      jobId = decodeURIComponent(match[2] as string);
    } catch {
      refuseUpgrade(socket, new GatewayError('bad_request', 'Malformed path'));
      return;
    }
    const query = new URL(request.url ?? '', 'http://localhost').searchParams;
    const token = bearerToken(request.headers.authorization) ?? query.get('token') ?? undefined;
    resolveTarget(ctx.access, userNs, jobId, token).then(
      (target) => {
        try {
          countRequest(target);
        } catch (error) {
          refuseUpgrade(socket, error as GatewayError);
          return;
        }
        wss.handleUpgrade(request, socket, head, (ws) => {
          sockets.add(ws);
          keepAlive(ws, 30_000);
          ws.on('error', () => undefined);
          const untrack = live.track(target.grant, () => {
            ws.close(4401, 'access revoked');
            setTimeout(() => ws.terminate(), 1_000).unref();
          });
          ws.once('close', () => {
            sockets.delete(ws);
            untrack();
          });
          runStreamSession(ws, target, ctx).catch((error: unknown) => {
            app.log.error({ err: error }, 'gateway: stream session failed');
            ws.terminate();
          });
        });
      },
      (error: unknown) => {
        refuseUpgrade(socket, error instanceof GatewayError ? error : new GatewayError('gateway_error', String(error)));
      },
    );
  };
  app.server.on('upgrade', onUpgrade);
  app.addHook('preClose', async () => {
    closing = true;
    app.server.off('upgrade', onUpgrade);
    for (const ws of sockets) ws.terminate();
  });
  app.addHook('onClose', async () => {
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });
}

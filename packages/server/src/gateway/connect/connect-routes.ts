import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { connectCodeOfStatus } from '../../errors/error-codes.js';
import type { ExecProcess, ExecRequest } from '../../runtime/runtime.js';
import type { Release } from '../fair-scheduler.js';
import { type GatewayContext, type GatewayParams, actorOf, runtimeFailure, targetOf } from '../gateway-context.js';
import { maskSecrets, truncateText } from '../../services/sandbox-events.js';
import { GatewayError, retryAfterOf } from '../../errors/gateway-error.js';
import type { GatewayTarget } from '../gateway-target.js';
import { create, toBinary } from '@bufbuild/protobuf';
import { CommandSession, CommandSessionRegistry, type ProcessSelector } from './command-sessions.js';
import { ConnectError, decodeMessage, decompress, endStreamEnvelope, parseTimeoutMs, singleStreamMessage } from './connect-protocol.js';
import {
  type CommandSessionSelector,
  type CommandSpec,
  CommandSession as CommandSessionService,
  CommandSpecSchema,
  ConnectRequestSchema,
  ListResponseSchema,
  SendInputRequestSchema,
  SendSignalRequestSchema,
  Signal,
  StartRequestSchema,
  UpdateRequestSchema,
} from './gen/command_session_pb.js';
import { type Deadline, EventStream, pumpSession } from './session-stream.js';

/** The Connect service's path segment. */
export const SERVICE = CommandSessionService.typeName;
/** Methods whose errors are end-stream messages: every one but the unary ones (`Start`, `Connect`, `StreamInput`). */
const STREAMING = new Set(CommandSessionService.methods.filter((m) => m.methodKind !== 'unary').map((m) => m.name));
/** Largest request body (SendInput carries stdin). */
const BODY_LIMIT = 16 * 1024 * 1024;
/** PTY size when the request gives none. */
const DEFAULT_PTY = { rows: 24, cols: 80 };

/**
 * Docker cannot give an exec its terminal size at creation: the driver resizes the PTY right
 * after the process starts, so a program that asks for the size at once could see 0x0. With a
 * PTY the process is started through this wrapper, which waits up to ~1 s for a non-zero size,
 * then execs the real argv (the same wrapper as the WebSocket `stream` endpoint).
 */
const TTY_WRAPPER =
  'command -v stty >/dev/null 2>&1 || exec "$@"; i=0; ' +
  'while [ $i -lt 100 ]; do s=$(stty size 2>/dev/null); [ -n "$s" ] && [ "$s" != "0 0" ] && break; sleep 0.01; i=$((i+1)); done; exec "$@"';

interface MethodParams extends GatewayParams {
  method: string;
}

/**
 * Maps any failure of a request to a Connect error: a gateway error to its registered Connect
 * code (`GATEWAY_ERRORS`: 401 → `unauthenticated`, `sandbox_not_ready` → `unavailable`,
 * `sandbox_not_found` → `not_found`, …); runtime failures as the REST gateway maps them; a
 * framework 4xx by its status; anything unexpected → `internal`.
 */
export function toConnectError(error: unknown, target?: GatewayTarget): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof GatewayError) return new ConnectError(error.connectCode, error.message);
  if (target) return toConnectError(runtimeFailure(target, error));
  const status = (error as Partial<FastifyError>).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) return new ConnectError(connectCodeOfStatus(status), (error as Error).message);
  return new ConnectError('internal', 'Internal error; the server log has the details');
}

/** Sends a Connect error in the shape the method's kind (unary or streaming) calls for. */
function sendConnectError(reply: FastifyReply, method: string | undefined, error: ConnectError): FastifyReply {
  if (method !== undefined && STREAMING.has(method)) {
    return reply.code(200).type('application/connect+proto').send(endStreamEnvelope(error));
  }
  return reply.code(error.status).type('application/json').send(error.toJson());
}

function requireContentType(request: FastifyRequest, streaming: boolean): void {
  const type = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  const want = streaming ? 'application/connect+proto' : 'application/proto';
  if (type !== want) throw new ConnectError('unimplemented', `Unsupported content type ${JSON.stringify(type)}: this server speaks ${want}`);
}

function bodyOf(request: FastifyRequest): Buffer {
  return Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
}

function noNul(value: string, name: string): string {
  if (value.includes('\0')) throw new ConnectError('invalid_argument', `${name}: must not contain NUL`);
  return value;
}

function dimension(value: number, name: string): number {
  if (value < 1 || value > 10_000) throw new ConnectError('invalid_argument', `${name}: must be from 1 to 10000`);
  return value;
}

/** The runtime request for a `StartRequest`. */
function execRequestOf(spec: CommandSpec, pty: { rows: number; cols: number } | undefined, stdin: boolean): ExecRequest {
  if (!spec.cmd) throw new ConnectError('invalid_argument', 'command.cmd: required');
  const argv = [noNul(spec.cmd, 'command.cmd'), ...spec.args.map((a) => noNul(a, 'command.args'))];
  const request: ExecRequest = { argv, stdin: stdin || pty !== undefined };
  const envKeys = Object.keys(spec.envs);
  if (envKeys.length > 0) {
    for (const key of envKeys) {
      if (key === '' || key.includes('=') || key.includes('\0')) throw new ConnectError('invalid_argument', `command.envs: invalid name ${JSON.stringify(key)}`);
      noNul(spec.envs[key] as string, `command.envs[${key}]`);
    }
    request.env = { ...spec.envs };
  }
  if (spec.cwd !== undefined && spec.cwd !== '') {
    if (!spec.cwd.startsWith('/')) throw new ConnectError('invalid_argument', 'command.cwd: must be an absolute path');
    request.cwd = noNul(spec.cwd, 'command.cwd');
  }
  if (pty) {
    request.tty = pty;
    request.argv = ['/bin/sh', '-c', TTY_WRAPPER, 'corral-tty', ...argv];
  }
  return request;
}

function selectorOf(session: CommandSessionSelector | undefined): ProcessSelector {
  const selector = session?.selector;
  if (selector === undefined || selector.case === undefined) throw new ConnectError('invalid_argument', 'session: give pid or tag');
  return selector;
}

/** A `CommandSpec` with its `envs` in key order, as `List` answers it. */
function sortedEnvs(spec: CommandSpec): CommandSpec {
  const envs = Object.fromEntries(Object.entries(spec.envs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return create(CommandSpecSchema, { cmd: spec.cmd, args: spec.args, envs, ...(spec.cwd !== undefined ? { cwd: spec.cwd } : {}) });
}

function describe(selector: ProcessSelector): string {
  return selector.case === 'pid' ? `pid ${selector.value}` : `tag ${JSON.stringify(selector.value)}`;
}

/** The bytes of a `bytes` field as a Buffer over the same memory. */
function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Serves Connect-RPC `command_session.CommandSession` under
 * `/gateway/:user_ns/:job_id/command_session.CommandSession/<Method>` (docs/connect-rpc.md):
 * `Start` and `Connect` stream a process's events, `SendInput`, `SendSignal`, `List` and
 * `Update` are unary; `StreamInput` answers `unimplemented`. The gateway's token and state
 * checks apply, with their failures as Connect errors. Registered as an encapsulated child of
 * the gateway plugin, with its own body parser and error handler.
 */
export function registerConnectRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const registry = new CommandSessionRegistry();
  const streams = new Set<EventStream>();

  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_request, body, done) => done(null, body));

    scope.setErrorHandler((error: unknown, request, reply) => {
      const connectError = toConnectError(error);
      const retryAfter = error instanceof GatewayError ? retryAfterOf(error) : undefined;
      if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
      if (connectError.code === 'internal') request.log.error({ err: error }, 'gateway connect: unhandled error');
      return sendConnectError(reply, (request.params as Partial<MethodParams>).method, connectError);
    });

    scope.addHook('preClose', async () => {
      for (const stream of streams) stream.end(new ConnectError('unavailable', 'The server is shutting down'));
      await Promise.all(registry.all().map((s) => s.kill('SIGKILL')));
    });

    scope.post<{ Params: MethodParams }>(`/:user_ns/:job_id/${SERVICE}/:method`, { config: { public: true }, bodyLimit: BODY_LIMIT }, async (request, reply) => {
      const target = targetOf(request);
      const method = request.params.method;
      switch (method) {
        case 'Start':
          return start(request, reply, target);
        case 'Connect':
          return connect(request, reply, target);
        case 'SendInput': {
          const req = decodeMessage(SendInputRequestSchema, await unaryBody(request));
          const session = findSession(target, selectorOf(req.session));
          const input = req.input?.input;
          if (input === undefined || input.case === undefined) throw new ConnectError('invalid_argument', 'input: give stdin or pty bytes');
          if (!session.acceptsInput) throw new ConnectError('failed_precondition', `Process ${session.pid} was started without stdin: pass stdin: true or a PTY`);
          await session.write(bufferOf(input.value));
          ctx.access.touch(target.sandboxId);
          return unaryOk(reply, Buffer.alloc(0));
        }
        case 'SendSignal': {
          const req = decodeMessage(SendSignalRequestSchema, await unaryBody(request));
          const session = findSession(target, selectorOf(req.session));
          const signal = req.signal === Signal.SIGKILL ? 'SIGKILL' : req.signal === Signal.SIGTERM ? 'SIGTERM' : undefined;
          if (!signal) throw new ConnectError('invalid_argument', `signal: SIGNAL_SIGTERM (15) or SIGNAL_SIGKILL (9), not ${req.signal}`);
          await session.kill(signal);
          ctx.access.touch(target.sandboxId);
          return unaryOk(reply, Buffer.alloc(0));
        }
        case 'List': {
          await unaryBody(request);
          const sessions = registry.list(target.sandboxId).map((s) => ({ command: sortedEnvs(s.spec), pid: s.pid, ...(s.tag !== undefined ? { tag: s.tag } : {}) }));
          return unaryOk(reply, toBinary(ListResponseSchema, create(ListResponseSchema, { sessions })));
        }
        case 'Update': {
          const req = decodeMessage(UpdateRequestSchema, await unaryBody(request));
          const session = findSession(target, selectorOf(req.session));
          const size = req.pty?.size;
          if (!size) throw new ConnectError('invalid_argument', 'pty.size: required');
          if (!session.pty) throw new ConnectError('failed_precondition', `Process ${session.pid} has no PTY`);
          await session.proc.resize(dimension(size.rows, 'pty.size.rows'), dimension(size.cols, 'pty.size.cols'));
          ctx.access.touch(target.sandboxId);
          return unaryOk(reply, Buffer.alloc(0));
        }
        case 'StreamInput':
          throw new ConnectError('unimplemented', 'StreamInput is not served: send input with SendInput');
        default:
          throw new ConnectError('unimplemented', `${SERVICE}/${method} is not a method of this service`);
      }
    });
  });

  function unaryBody(request: FastifyRequest): Promise<Buffer> {
    requireContentType(request, false);
    return decompress(bodyOf(request), request.headers['content-encoding']);
  }

  function unaryOk(reply: FastifyReply, message: Uint8Array): FastifyReply {
    return reply.code(200).type('application/proto').send(message);
  }

  function findSession(target: GatewayTarget, selector: ProcessSelector): CommandSession {
    const session = registry.find(target.sandboxId, selector);
    if (!session) throw new ConnectError('not_found', `No running process with ${describe(selector)} in sandbox ${target.sandboxId}`);
    return session;
  }

  /** The request's message and its deadline (`Connect-Timeout-Ms`, counted from when the request arrived). */
  async function streamRequest(request: FastifyRequest): Promise<{ message: Buffer; deadline: Deadline | undefined }> {
    requireContentType(request, true);
    const deadlineMs = parseTimeoutMs(request.headers['connect-timeout-ms']);
    const deadline = deadlineMs === undefined ? undefined : { ms: deadlineMs, at: performance.now() + deadlineMs };
    const encoding = request.headers['connect-content-encoding'];
    const message = await singleStreamMessage(bodyOf(request), Array.isArray(encoding) ? encoding[0] : encoding);
    return { message, deadline };
  }

  /** Streams `session` on the hijacked reply until it ends. */
  async function serveStream(reply: FastifyReply, target: GatewayTarget, session: CommandSession, deadline: Deadline | undefined, killOnDeadline: boolean): Promise<void> {
    reply.hijack();
    const stream = new EventStream(reply.raw);
    streams.add(stream);
    try {
      await pumpSession(session, stream, { deadline, killOnDeadline, failure: (error) => toConnectError(error, target) });
    } finally {
      streams.delete(stream);
      stream.end();
    }
  }

  async function start(request: FastifyRequest, reply: FastifyReply, target: GatewayTarget): Promise<void> {
    const { message, deadline } = await streamRequest(request);
    const req = decodeMessage(StartRequestSchema, message);
    if (!req.command) throw new ConnectError('invalid_argument', 'command: required');
    const size = req.pty?.size;
    const pty = req.pty
      ? {
          rows: size?.rows ? dimension(size.rows, 'pty.size.rows') : DEFAULT_PTY.rows,
          cols: size?.cols ? dimension(size.cols, 'pty.size.cols') : DEFAULT_PTY.cols,
        }
      : undefined;
    const execRequest = execRequestOf(req.command, pty, req.stdin === true);
    // The process holds a slot of the session pool until it exits (docs/gateway.md); waiting for
    // one ends when the client leaves or the deadline passes.
    const left = new AbortController();
    const onLeft = (): void => left.abort(new Error('client disconnected'));
    reply.raw.once('close', onLeft);
    const expired = deadline ? new ConnectError('deadline_exceeded', `Deadline of ${deadline.ms} ms exceeded while waiting for a process slot`) : undefined;
    const deadlineTimer = deadline ? setTimeout(() => left.abort(expired), Math.max(0, deadline.at - performance.now())) : undefined;
    let release: Release;
    try {
      release = await ctx.sessions.acquire(target, left.signal);
    } catch (error) {
      if (expired !== undefined && left.signal.reason === expired) throw expired;
      if (left.signal.aborted) return;
      throw error;
    } finally {
      clearTimeout(deadlineTimer);
      reply.raw.off('close', onLeft);
    }
    if (left.signal.aborted) {
      release();
      return;
    }
    let released = false;
    const done = ctx.access.keepActive(target.sandboxId);
    try {
      let proc: ExecProcess;
      try {
        proc = await target.runtime.exec(target.runtimeId, execRequest);
      } catch (error) {
        throw toConnectError(error, target);
      }
      const session = new CommandSession(target.sandboxId, registry.allocatePid(target.sandboxId), req.tag, req.command, pty !== undefined, proc);
      registry.add(session);
      ctx.events.record(target.sandboxId, 'stream.opened', { command: truncateText(maskSecrets([req.command.cmd, ...req.command.args].join(' '), Object.values(req.command.envs))), tty: pty !== undefined, detach: false, via: 'connect' }, actorOf(target));
      released = true;
      void session.outcome.then(release);
      if (reply.raw.destroyed || reply.raw.socket?.destroyed === true) {
        // The client left while the process was starting.
        await session.kill('SIGKILL');
        return;
      }
      await serveStream(reply, target, session, deadline, true);
    } finally {
      if (!released) release();
      done();
    }
  }

  async function connect(request: FastifyRequest, reply: FastifyReply, target: GatewayTarget): Promise<void> {
    const { message, deadline } = await streamRequest(request);
    const req = decodeMessage(ConnectRequestSchema, message);
    const session = findSession(target, selectorOf(req.session));
    const done = ctx.access.keepActive(target.sandboxId);
    try {
      await serveStream(reply, target, session, deadline, false);
    } finally {
      done();
    }
  }
}

import type { Readable } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { type GatewayErrorCode, STREAM_ERRORS, type StreamErrorCode } from '../errors/error-codes.js';
import type { ExecProcess, ExecRequest } from '../runtime/runtime.js';
import type { Release } from './fair-scheduler.js';
import type { GatewayContext } from './gateway-context.js';
import { actorOf, runtimeFailure } from './gateway-context.js';
import { maskSecrets, truncateText } from '../services/sandbox-events.js';
import { GatewayError } from '../errors/gateway-error.js';
import { writeDrained } from './write-drained.js';
import type { GatewayTarget } from './gateway-target.js';

/** Output channel bytes that prefix every binary frame the server sends. */
export const STDOUT_CHANNEL = 1;
/** See `STDOUT_CHANNEL`. */
export const STDERR_CHANNEL = 2;

/** Signals a client may send to the process tree. */
const SIGNALS = new Set<NodeJS.Signals>(['SIGINT', 'SIGTERM', 'SIGKILL', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGSTOP', 'SIGCONT', 'SIGWINCH']);
/** How long the client has to send its `start` message. */
const START_TIMEOUT_MS = 30_000;
/** Output is paused while more than this is queued on the socket. */
const HIGH_WATER = 1024 * 1024;
/** The client's messages stop being read while more than this much stdin waits for the process. */
const STDIN_HIGH_WATER = 1024 * 1024;

/**
 * Docker cannot give an exec its terminal size at creation (Engine API < 1.42): the driver resizes
 * the PTY right after the process starts, so a program that asks for the size at once can see
 * 0x0 (busybox `stty size` then fails). With a TTY the process is started through this wrapper,
 * which waits up to ~1 s for a non-zero size, then execs the real argv. Without `stty` it execs
 * at once.
 */
const TTY_WRAPPER =
  'command -v stty >/dev/null 2>&1 || exec "$@"; i=0; ' +
  'while [ $i -lt 100 ]; do s=$(stty size 2>/dev/null); [ -n "$s" ] && [ "$s" != "0 0" ] && break; sleep 0.01; i=$((i+1)); done; exec "$@"';

/** The validated `start` message. */
interface StartMessage {
  request: ExecRequest;
  timeoutSeconds: number | undefined;
  detach: boolean;
  /** What was asked to run, as one line (argv joined), for the sandbox event. */
  command: string;
}

class ProtocolError extends Error {}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function dimension(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 10_000) {
    throw new ProtocolError(`${name}: must be an integer from 1 to 10000`);
  }
  return value;
}

function parseStart(message: unknown, maxTimeoutSeconds: number): StartMessage {
  if (!isObject(message) || message.type !== 'start') throw new ProtocolError('The first message must be {"type":"start", …}');
  let argv: string[];
  if (message.argv !== undefined) {
    if (!Array.isArray(message.argv) || message.argv.length === 0 || !message.argv.every((a) => typeof a === 'string' && !a.includes('\0'))) {
      throw new ProtocolError('argv: must be a non-empty array of strings');
    }
    argv = message.argv as string[];
  } else if (typeof message.command === 'string') {
    argv = ['/bin/sh', '-c', message.command];
  } else {
    throw new ProtocolError('start: give argv (array of strings) or command (shell string)');
  }
  const request: ExecRequest = { argv };
  if (message.cwd !== undefined && message.cwd !== null) {
    if (typeof message.cwd !== 'string' || !message.cwd.startsWith('/')) throw new ProtocolError('cwd: must be an absolute path');
    request.cwd = message.cwd;
  }
  if (message.env !== undefined && message.env !== null) {
    if (!isObject(message.env) || !Object.values(message.env).every((v) => typeof v === 'string')) {
      throw new ProtocolError('env: must be an object of strings');
    }
    request.env = message.env as Record<string, string>;
  }
  if (message.user !== undefined && message.user !== null) {
    if (typeof message.user !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9._:-]{0,127}$/.test(message.user)) throw new ProtocolError('user: invalid');
    request.user = message.user;
  }
  if (message.tty !== undefined && message.tty !== null) {
    if (!isObject(message.tty)) throw new ProtocolError('tty: must be {rows, cols}');
    request.tty = { rows: dimension(message.tty.rows, 'tty.rows'), cols: dimension(message.tty.cols, 'tty.cols') };
  }
  if (message.stdin !== undefined && typeof message.stdin !== 'boolean') throw new ProtocolError('stdin: must be a boolean');
  request.stdin = message.stdin ?? request.tty !== undefined;
  if (request.tty !== undefined) request.argv = ['/bin/sh', '-c', TTY_WRAPPER, 'corral-tty', ...argv];
  let timeoutSeconds: number | undefined;
  if (message.timeout !== undefined && message.timeout !== null) {
    const t = message.timeout;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > maxTimeoutSeconds) {
      throw new ProtocolError(`timeout: must be an integer from 1 to ${maxTimeoutSeconds}`);
    }
    timeoutSeconds = t;
  }
  if (message.detach !== undefined && typeof message.detach !== 'boolean') throw new ProtocolError('detach: must be a boolean');
  const command = message.argv !== undefined ? argv.join(' ') : (argv[2] ?? '');
  return { request, timeoutSeconds, detach: message.detach === true, command };
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** Sends an `invalid_message` error; the session stays open. */
function invalidMessage(ws: WebSocket, message: string): void {
  const error: StreamErrorCode = 'invalid_message';
  sendJson(ws, { type: 'error', error, message });
}

function sendJson(ws: WebSocket, message: Record<string, unknown>): void {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
}

/**
 * Runs one streaming-exec session on an accepted WebSocket (protocol: docs/streaming-exec.md).
 * Resolves when the session is over. A client that disconnects before the process exits kills
 * its process tree, unless it started with `detach: true`.
 */
export async function runStreamSession(ws: WebSocket, target: GatewayTarget, ctx: GatewayContext): Promise<void> {
  const fail = (error: StreamErrorCode | GatewayErrorCode, message: string, code: number): void => {
    sendJson(ws, { type: 'error', error, message });
    if (ws.readyState === ws.OPEN) ws.close(code, error.slice(0, 100));
  };
  // One listener for the whole session: messages that arrive while the process is starting
  // are queued, not lost.
  let resolveFirst: (data: RawData | null) => void = () => undefined;
  const first = new Promise<RawData | null>((resolve) => (resolveFirst = resolve));
  let gotFirst = false;
  let handler: ((data: RawData, isBinary: boolean) => void) | null = null;
  const queued: Array<[RawData, boolean]> = [];
  let queuedBytes = 0;
  ws.on('message', (data, isBinary) => {
    if (!gotFirst) {
      gotFirst = true;
      resolveFirst(data);
    } else if (handler) handler(data, isBinary);
    else {
      // Kept until the process runs (it may wait for a session slot): past STDIN_HIGH_WATER
      // bytes the socket is not read any more.
      queued.push([data, isBinary]);
      queuedBytes += toBuffer(data).length;
      if (queuedBytes > STDIN_HIGH_WATER && !ws.isPaused) ws.pause();
    }
  });
  const startTimer = setTimeout(() => resolveFirst(null), START_TIMEOUT_MS);
  ws.once('close', () => resolveFirst(null));
  const firstMessage = await first;
  clearTimeout(startTimer);
  if (firstMessage === null) {
    fail('start_timeout', 'No start message', STREAM_ERRORS.start_timeout.close);
    return;
  }
  let start: StartMessage;
  try {
    start = parseStart(JSON.parse(toBuffer(firstMessage).toString('utf8')), ctx.config.maxExecTimeoutSeconds);
  } catch (error) {
    fail('invalid_start', error instanceof SyntaxError ? 'The start message must be JSON' : (error as Error).message, STREAM_ERRORS.invalid_start.close);
    return;
  }
  if (ws.readyState !== ws.OPEN) return;

  // A session holds a slot of the session pool (not of the exec pool) until its process exits;
  // it waits for one in the fair queue, and gives up when the client leaves first.
  const left = new AbortController();
  const onLeft = (): void => left.abort(new Error('client disconnected'));
  ws.once('close', onLeft);
  let release: Release;
  try {
    release = await ctx.sessions.acquire(target, left.signal);
  } catch (error) {
    if (error instanceof GatewayError) fail(error.error, error.message, 1013);
    return;
  } finally {
    ws.off('close', onLeft);
  }
  if (ws.readyState !== ws.OPEN) {
    release();
    return;
  }

  const done = ctx.access.keepActive(target.sandboxId);
  let proc: ExecProcess;
  try {
    proc = await target.runtime.exec(target.runtimeId, start.request);
  } catch (error) {
    release();
    done();
    const failure = runtimeFailure(target, error);
    fail(failure.error, failure.message, 1011);
    return;
  }
  ctx.events.record(
    target.sandboxId,
    'stream.opened',
    { command: truncateText(maskSecrets(start.command, Object.values(start.request.env ?? {}))), tty: start.request.tty !== undefined, detach: start.detach },
    actorOf(target),
  );
  let exited = false;
  let timedOut = false;
  const timer = start.timeoutSeconds
    ? setTimeout(() => {
        timedOut = true;
        void proc.kill('SIGKILL').catch(() => undefined);
      }, start.timeoutSeconds * 1000)
    : undefined;

  const outputs: Readable[] = [proc.stdout, proc.stderr];
  const forward = (stream: Readable, channel: number): void => {
    stream.on('data', (chunk: Buffer) => {
      if (ws.readyState !== ws.OPEN) return; // Detached or gone: drop output, keep the pipe flowing.
      ws.send(Buffer.concat([Buffer.from([channel]), chunk]), () => {
        if (ws.bufferedAmount < HIGH_WATER / 2) for (const s of outputs) s.resume();
      });
      if (ws.bufferedAmount > HIGH_WATER) for (const s of outputs) s.pause();
    });
    stream.on('error', () => undefined);
  };
  proc.stdin?.on('error', () => undefined);
  // Client messages take effect in the order they came: stdin sent after a resize reaches the
  // process only once the resize has been applied (Docker applies it through a separate API call).
  let ordered: Promise<unknown> = Promise.resolve();
  const inOrder = (step: () => unknown): void => {
    ordered = ordered.then(step).catch(() => undefined);
  };
  // Stdin respects back-pressure: each write waits for the process's stdin to drain, and while
  // more than STDIN_HIGH_WATER bytes wait, the WebSocket is not read (TCP holds the client back).
  let pendingStdin = 0;
  const writeStdin = (chunk: Buffer): void => {
    pendingStdin += chunk.length;
    if (pendingStdin > STDIN_HIGH_WATER && !ws.isPaused) ws.pause();
    inOrder(async () => {
      try {
        if (proc.stdin) await writeDrained(proc.stdin, chunk);
      } finally {
        pendingStdin -= chunk.length;
        if (pendingStdin <= STDIN_HIGH_WATER / 2 && ws.isPaused) ws.resume();
      }
    });
  };
  forward(proc.stdout, STDOUT_CHANNEL);
  forward(proc.stderr, STDERR_CHANNEL);
  sendJson(ws, { type: 'started' });

  handler = (data, isBinary) => {
    if (isBinary) {
      writeStdin(toBuffer(data));
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(toBuffer(data).toString('utf8'));
    } catch {
      invalidMessage(ws, 'Text messages must be JSON');
      return;
    }
    if (!isObject(message)) return;
    switch (message.type) {
      case 'stdin':
        if (typeof message.data === 'string') writeStdin(Buffer.from(message.data, message.encoding === 'base64' ? 'base64' : 'utf8'));
        return;
      case 'stdin_eof':
        inOrder(() => proc.stdin?.end());
        return;
      case 'resize': {
        let size: [number, number];
        try {
          size = [dimension(message.rows, 'rows'), dimension(message.cols, 'cols')];
        } catch (error) {
          invalidMessage(ws, (error as Error).message);
          return;
        }
        inOrder(() => proc.resize(...size));
        return;
      }
      case 'signal': {
        const signal = message.signal as NodeJS.Signals;
        if (!SIGNALS.has(signal)) {
          invalidMessage(ws, `signal: one of ${[...SIGNALS].join(', ')}`);
          return;
        }
        void proc.kill(signal).catch(() => undefined);
        return;
      }
      default:
        invalidMessage(ws, `Unknown message type ${JSON.stringify(message.type)}`);
    }
  };
  for (const [data, isBinary] of queued.splice(0)) handler(data, isBinary);
  queuedBytes = 0;
  if (ws.isPaused && pendingStdin <= STDIN_HIGH_WATER / 2) ws.resume();
  ws.on('close', () => {
    for (const s of outputs) s.resume();
    if (exited) return;
    if (start.detach) {
      proc.stdin?.end();
      return;
    }
    void proc.kill('SIGKILL').catch(() => undefined);
  });

  try {
    const { exitCode } = await proc.wait();
    exited = true;
    sendJson(ws, timedOut ? { type: 'exit', exit_code: exitCode, timed_out: true } : { type: 'exit', exit_code: exitCode });
    if (ws.readyState === ws.OPEN) ws.close(1000, 'exited');
  } catch (error) {
    exited = true;
    const failure = runtimeFailure(target, error);
    fail(failure.error, failure.message, 1011);
  } finally {
    clearTimeout(timer);
    release();
    done();
  }
}

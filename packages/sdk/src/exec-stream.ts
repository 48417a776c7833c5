import type { RawData, WebSocket } from 'ws';
import type { IncomingMessage } from 'node:http';
import { CorralError } from './errors.js';
import type { GatewayClient } from './gateway-client.js';
import { parseJson } from './http.js';

/** Signals a streaming exec may send. */
export type ExecSignal = 'SIGINT' | 'SIGTERM' | 'SIGKILL' | 'SIGHUP' | 'SIGQUIT' | 'SIGUSR1' | 'SIGUSR2' | 'SIGSTOP' | 'SIGCONT' | 'SIGWINCH';

/** Options of a streaming exec. */
export interface ExecStreamOptions {
  /** Allocate a terminal: `true` (24×80) or its size. Output then arrives on stdout only. */
  tty?: boolean | { rows: number; cols: number };
  /** Keep stdin open for {@link ExecSession.write}. Default: true with `tty`, false without. */
  stdin?: boolean;
  cwd?: string;
  env?: Record<string, string>;
  user?: string;
  /** Seconds before the server kills the process (integer); none = no limit. */
  timeout?: number;
  /** Keep the process running after this client disconnects. */
  detach?: boolean;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

/** How a streamed process ended. */
export interface ExecStreamResult {
  exitCode: number;
  /** The server killed it at `timeout`. */
  timedOut: boolean;
}

/**
 * A process running in a sandbox over the gateway's WebSocket (docs/streaming-exec.md): write to
 * its stdin, close it, resize its terminal, signal it, and wait for its exit code.
 *
 * @example
 * ```ts
 * const session = await sandbox.execStream(['cat'], { stdin: true, onStdout: (b) => process.stdout.write(b) });
 * session.write('hello\n');
 * session.closeStdin();
 * const { exitCode } = await session.wait();
 * ```
 */
export class ExecSession {
  private readonly done: Promise<ExecStreamResult>;

  constructor(private readonly ws: WebSocket, done: Promise<ExecStreamResult>) {
    this.done = done;
    done.catch(() => undefined);
  }

  /** Sends bytes (or UTF-8 text) to the process's stdin. */
  write(data: string | Uint8Array): void {
    this.ws.send(typeof data === 'string' ? Buffer.from(data) : data, { binary: true });
  }

  /** Closes stdin: the process reads EOF; output keeps flowing. */
  closeStdin(): void {
    this.ws.send(JSON.stringify({ type: 'stdin_eof' }));
  }

  /** Resizes the terminal (no-op without `tty`). */
  resize(rows: number, cols: number): void {
    this.ws.send(JSON.stringify({ type: 'resize', rows, cols }));
  }

  /** Sends a signal to the process and everything it started. */
  signal(signal: ExecSignal): void {
    this.ws.send(JSON.stringify({ type: 'signal', signal }));
  }

  /** Resolves with the exit code once the process has exited and all output was delivered. */
  wait(): Promise<ExecStreamResult> {
    return this.done;
  }

  /** Disconnects; the server kills the process unless it was started with `detach`. */
  close(): void {
    this.ws.close(1000);
  }
}

/** Starts a streaming exec. Resolves once the server says the process runs. */
export async function openExecStream(gateway: GatewayClient, sandboxId: string, command: string | string[], options: ExecStreamOptions = {}): Promise<ExecSession> {
  const tty = options.tty === true ? { rows: 24, cols: 80 } : options.tty || undefined;
  const start = {
    type: 'start',
    ...(Array.isArray(command) ? { argv: command } : { command }),
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    ...(options.env !== undefined ? { env: options.env } : {}),
    ...(options.user !== undefined ? { user: options.user } : {}),
    ...(tty ? { tty } : {}),
    stdin: options.stdin ?? Boolean(tty),
    ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
    ...(options.detach ? { detach: true } : {}),
  };
  const what = Array.isArray(command) ? command.join(' ') : command;
  // `ws` is loaded on the first streaming exec, not with the SDK: programs that never stream
  // (the CLI's `sandbox list`, for one) do not pay for it at start-up.
  const { WebSocket } = await import('ws');
  return gateway.withAuth(sandboxId, async (auth) => {
    const url = `${auth.base.replace(/^http/, 'ws')}/stream`;
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${auth.token}` }, perMessageDeflate: false });
    const opened = await new Promise<{ ok: true } | { ok: false; status: number; body: string }>((resolve, reject) => {
      ws.once('open', () => resolve({ ok: true }));
      ws.once('unexpected-response', (_req, res: IncomingMessage) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ ok: false, status: res.statusCode ?? 0, body }));
        res.on('error', () => resolve({ ok: false, status: res.statusCode ?? 0, body }));
      });
      ws.once('error', (error) => reject(new CorralError(`Cannot open the exec stream to sandbox ${sandboxId} (${error.message}). Is the server reachable?`, { cause: error })));
    });
    if (!opened.ok) {
      ws.terminate();
      if (opened.status === 401) return 'unauthorized' as const;
      throw await gateway.errorFor(sandboxId, opened.status, parseJson(opened.body), 'stream', what);
    }
    let started!: () => void;
    let failedToStart!: (error: unknown) => void;
    const startedPromise = new Promise<void>((resolve, reject) => {
      started = resolve;
      failedToStart = reject;
    });
    const done = new Promise<ExecStreamResult>((resolve, reject) => {
      let result: ExecStreamResult | undefined;
      let serverError: { error?: string; message?: string } | undefined;
      ws.on('message', (data: RawData, isBinary: boolean) => {
        const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
        if (isBinary) {
          const channel = buf[0];
          const payload = buf.subarray(1);
          if (channel === 2) options.onStderr?.(payload);
          else options.onStdout?.(payload);
          return;
        }
        const message = parseJson(buf.toString('utf8')) as { type?: string; exit_code?: number; timed_out?: boolean; error?: string; message?: string } | undefined;
        if (message?.type === 'started') started();
        else if (message?.type === 'exit') result = { exitCode: message.exit_code ?? -1, timedOut: message.timed_out === true };
        else if (message?.type === 'error') serverError = message;
      });
      ws.once('close', (code, reason) => {
        if (result) {
          resolve(result);
          return;
        }
        const fail = async (): Promise<unknown> => {
          if (serverError?.error === 'sandbox_not_found') return gateway.notRunning(sandboxId, what);
          const detail = serverError ? `${serverError.error}: ${serverError.message}` : `socket closed with ${code}${reason.length ? ` ${reason.toString()}` : ''}`;
          return new CorralError(`The exec stream in sandbox ${sandboxId} ended before the process exited (${detail}).`, { code: serverError?.error });
        };
        void fail().then((error) => {
          failedToStart(error);
          reject(error);
        });
      });
      ws.on('error', () => undefined);
    });
    ws.send(JSON.stringify(start));
    await startedPromise;
    return new ExecSession(ws, done);
  });
}

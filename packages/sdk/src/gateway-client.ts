import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import {
  CommandTimeoutError,
  ConflictError,
  CorralError,
  FileTooLargeError,
  NotFoundError,
  SandboxNotRunningError,
  TimeoutError,
  UnauthorizedError,
  ValidationError,
  notRunningKind,
} from './errors.js';
import type { GatewayAuth, GatewayTokenCache } from './gateway-tokens.js';
import { connectionError, failedBeforeSend, parseJson } from './http.js';
import type { ResolvedOptions } from './options.js';
import type { SandboxesApi } from './resources/sandboxes-api.js';
import { backoffDelay, sleep } from './retry.js';

/** Result of a finished command. */
export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Options of {@link GatewayClient.exec}. */
export interface ExecOptions {
  /** Working directory (absolute). */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Seconds before the command is killed; integer (the server's default: 300). */
  timeout?: number;
  /** User to run as, like `docker exec -u` (`root`, `1000`, `1000:1000`). */
  user?: string;
  signal?: AbortSignal;
}

/** A window of a text file. */
export interface ReadFileResult {
  content: string;
  size: number;
  totalSize: number | undefined;
  offset: number | undefined;
  truncated: boolean | undefined;
}

/** Data to upload: bytes, text, or a stream of bytes. */
export type UploadSource = Buffer | Uint8Array | string | NodeJS.ReadableStream | AsyncIterable<Uint8Array>;

/** Progress of a transfer: bytes so far and the total when known. */
export type ProgressCallback = (transferred: number, total: number | undefined) => void;

const NOT_READY_DELAYS_MS = [250, 500, 1000];
const TERMINAL = new Set(['ERROR', 'TERMINATED', 'TIMEOUT']);

interface GatewayErrorBody {
  error?: string;
  message?: string;
  stdout?: string;
  stderr?: string;
}

function asGatewayBody(value: unknown): GatewayErrorBody {
  return typeof value === 'object' && value !== null ? (value as GatewayErrorBody) : {};
}

/** `"quoted"` for a shell. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'"'"'`)}'`;
}

/**
 * The data plane: exec, upload, download and read-file through the sandbox's gateway, with
 * cached tokens (one re-auth and retry on 401), 409 "not ready" retries while the sandbox is
 * RUNNING, typed errors via `/error-context`, and the retries protocol §3.10 allows.
 */
export class GatewayClient {
  constructor(
    readonly tokens: GatewayTokenCache,
    private readonly api: SandboxesApi,
    private readonly options: ResolvedOptions,
  ) {}

  /** Runs `fn` with a token; on 401 gets a fresh token and runs it once more. */
  async withAuth<T>(sandboxId: string, fn: (auth: GatewayAuth) => Promise<T | 'unauthorized'>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const auth = await this.tokens.get(sandboxId);
      const result = await fn(auth);
      if (result !== 'unauthorized') return result;
      this.tokens.invalidate(sandboxId, auth.token);
      if (attempt >= 1) {
        throw new UnauthorizedError(
          `The gateway refused a fresh token for sandbox ${sandboxId}. Check that the server's CORRAL_PUBLIC_URL points at this server and that replicas share CORRAL_GATEWAY_SECRET.`,
          { status: 401, code: 'unauthorized' },
        );
      }
    }
  }

  /** The typed error for a sandbox the gateway says is gone or not ready, from `/error-context`. */
  async notRunning(sandboxId: string, command?: string): Promise<SandboxNotRunningError> {
    try {
      const ctx = await this.api.errorContext(sandboxId);
      const kind = ctx.status !== null && TERMINAL.has(ctx.status) ? notRunningKind(ctx.status, ctx.errorType) : 'SANDBOX_NOT_FOUND';
      return new SandboxNotRunningError(sandboxId, {
        kind,
        status: ctx.status,
        errorType: ctx.errorType,
        errorMessage: ctx.errorMessage,
        ...(command !== undefined ? { command } : {}),
      });
    } catch (error) {
      if (error instanceof NotFoundError) return new SandboxNotRunningError(sandboxId, { kind: 'SANDBOX_NOT_FOUND', ...(command !== undefined ? { command } : {}) });
      throw error;
    }
  }

  /** Maps a gateway error answer to a typed error. */
  async errorFor(sandboxId: string, status: number, body: unknown, what: string, command?: string): Promise<CorralError> {
    const b = asGatewayBody(body);
    const message = b.message ?? `HTTP ${status}`;
    if (status === 502 && b.error === 'sandbox_not_found') return this.notRunning(sandboxId, command);
    if (status === 409) {
      const ctx = await this.api.errorContext(sandboxId).catch(() => undefined);
      if (ctx?.status && TERMINAL.has(ctx.status)) return this.notRunning(sandboxId, command);
      return new ConflictError(`Sandbox ${sandboxId} is ${ctx?.status ?? 'not ready'}, not RUNNING yet: await sandbox.waitUntilRunning() first.`, { status, code: b.error });
    }
    if (status === 404) return new NotFoundError(`${message}. Check the path (${what}).`, { status, code: b.error });
    if (status === 413) return new FileTooLargeError(`${message}`, { status, code: b.error });
    if (status === 422 || status === 400) return new ValidationError(`${message}. Fix the request (${what}).`, [], { status, code: b.error });
    if (status === 401) return new UnauthorizedError(`${message}.`, { status, code: b.error });
    return new CorralError(`Gateway error on ${what} in sandbox ${sandboxId}: HTTP ${status}: ${message}`, { status, code: b.error });
  }

  private headers(auth: GatewayAuth, extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${auth.token}`, 'user-agent': this.options.userAgent, ...extra };
  }

  /**
   * Sends one gateway request with the protocol's retries: connection errors before sending
   * (always), connection errors after sending and 5xx (when `replayable`), 408 (when `retry408`),
   * 409 while the sandbox is RUNNING (3 times, 0.25/0.5/1 s).
   */
  private async send(
    sandboxId: string,
    what: string,
    build: (auth: GatewayAuth) => { url: string; init: RequestInit },
    policy: { replayable: boolean; retry5xx: boolean; retry408: boolean; timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<Response> {
    let transient = 0;
    let notReady = 0;
    for (;;) {
      const response = await this.withAuth<Response | 'retry'>(sandboxId, async (auth) => {
        const { url, init } = build(auth);
        const timeout = AbortSignal.timeout(policy.timeoutMs);
        const signal = policy.signal ? AbortSignal.any([policy.signal, timeout]) : timeout;
        let res: Response;
        try {
          res = await this.options.fetch(url, { ...init, signal });
        } catch (error) {
          if (policy.signal?.aborted) throw policy.signal.reason;
          const retryable = failedBeforeSend(error) || policy.replayable;
          if (retryable && transient < 3) {
            await sleep(backoffDelay({ maxRetries: 3, baseDelayMs: 1000, maxDelayMs: 30_000 }, transient++));
            return 'retry';
          }
          if (timeout.aborted) throw new TimeoutError(`${what} in sandbox ${sandboxId} got no answer within ${policy.timeoutMs} ms.`, { cause: error });
          throw connectionError(new URL(url).origin, error, `${what} in sandbox ${sandboxId}`);
        }
        if (res.status === 401) {
          await res.body?.cancel();
          return 'unauthorized';
        }
        return res;
      });
      if (response === 'retry') continue;
      const status = response.status;
      if (status === 409 && notReady < NOT_READY_DELAYS_MS.length) {
        const text = await response.text();
        const ctx = await this.api.errorContext(sandboxId).catch(() => undefined);
        if (ctx?.status === 'RUNNING') {
          await sleep(NOT_READY_DELAYS_MS[notReady++] ?? 1000);
          continue;
        }
        return new Response(text, { status, headers: response.headers });
      }
      const transientStatus = (policy.retry5xx && [500, 502, 503, 504, 524].includes(status)) || (policy.retry408 && status === 408);
      if (transientStatus && transient < 3) {
        const text = await response.text();
        if (asGatewayBody(parseJson(text)).error !== 'sandbox_not_found') {
          await sleep(NOT_READY_DELAYS_MS[transient++] ?? 1000);
          continue;
        }
        return new Response(text, { status, headers: response.headers });
      }
      return response;
    }
  }

  /**
   * `POST exec`: runs a shell command and returns its output and exit code (a non-zero exit is
   * not an error). Throws {@link CommandTimeoutError} past `timeout`, {@link SandboxNotRunningError}
   * when the sandbox has ended.
   */
  async exec(sandboxId: string, command: string, options: ExecOptions = {}): Promise<CommandResult> {
    const timeout = options.timeout ?? 300;
    if (!Number.isInteger(timeout) || timeout < 1) throw new ValidationError(`timeout must be a whole number of seconds ≥ 1, got ${timeout}`, [{ param: 'timeout', details: 'integer ≥ 1' }]);
    const body = JSON.stringify({
      command,
      working_dir: options.cwd ?? null,
      env: options.env ?? {},
      sandbox_id: sandboxId,
      timeout,
      ...(options.user !== undefined ? { user: options.user } : {}),
    });
    const response = await this.send(
      sandboxId,
      'exec',
      (auth) => ({ url: `${auth.base}/exec`, init: { method: 'POST', headers: this.headers(auth, { 'content-type': 'application/json' }), body } }),
      { replayable: false, retry5xx: false, retry408: false, timeoutMs: (timeout + 5) * 1000, signal: options.signal },
    );
    const text = await response.text();
    const parsed = parseJson(text);
    if (response.status === 408) {
      const ctx = await this.api.errorContext(sandboxId).catch(() => undefined);
      if (ctx?.status && TERMINAL.has(ctx.status)) throw await this.notRunning(sandboxId, command);
      const b = asGatewayBody(parsed);
      throw new CommandTimeoutError(sandboxId, command, timeout, { ...(b.stdout !== undefined ? { stdout: b.stdout } : {}), ...(b.stderr !== undefined ? { stderr: b.stderr } : {}) });
    }
    if (!response.ok) throw await this.errorFor(sandboxId, response.status, parsed, 'exec', command);
    const r = parsed as { stdout?: unknown; stderr?: unknown; exit_code?: unknown } | undefined;
    if (!r || typeof r.stdout !== 'string' || typeof r.stderr !== 'string' || typeof r.exit_code !== 'number') {
      throw new CorralError(`exec answered HTTP ${response.status} without {stdout, stderr, exit_code}: ${text.slice(0, 200)}`, { status: response.status });
    }
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exit_code };
  }

  /**
   * `POST upload`: streams `data` into the sandbox at `path` as multipart part `file`; parent
   * directories are created. Bytes and strings are retried on transient failures, streams only
   * when nothing was sent.
   */
  async upload(sandboxId: string, path: string, data: UploadSource, options: { onProgress?: ProgressCallback; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ path: string; size: number }> {
    const replayable = typeof data === 'string' || data instanceof Uint8Array;
    const bytes = typeof data === 'string' ? Buffer.from(data) : data instanceof Uint8Array ? data : undefined;
    const total = bytes?.length;
    const boundary = `----corral${Math.random().toString(16).slice(2)}${Date.now().toString(16)}`;
    const filename = (path.split('/').pop() || 'file').replace(/["\r\n]/g, '_');
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const onProgress = options.onProgress;
    async function* body(): AsyncGenerator<Uint8Array> {
      yield head;
      let sent = 0;
      if (bytes) {
        for (let i = 0; i < bytes.length; i += 1 << 20) {
          const chunk = bytes.subarray(i, i + (1 << 20));
          sent += chunk.length;
          yield chunk;
          onProgress?.(sent, total);
        }
      } else {
        for await (const chunk of data as AsyncIterable<Uint8Array | string>) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          sent += buf.length;
          yield buf;
          onProgress?.(sent, total);
        }
      }
      yield tail;
    }
    const query = new URLSearchParams({ path, sandbox_id: sandboxId });
    const response = await this.send(
      sandboxId,
      `upload ${path}`,
      (auth) => ({
        url: `${auth.base}/upload?${query}`,
        init: {
          method: 'POST',
          headers: this.headers(auth, {
            'content-type': `multipart/form-data; boundary=${boundary}`,
            ...(total !== undefined ? { 'content-length': String(head.length + total + tail.length) } : {}),
          }),
          body: Readable.from(body()) as unknown as RequestInit['body'],
          duplex: 'half',
        } as RequestInit,
      }),
      { replayable, retry5xx: replayable, retry408: replayable, timeoutMs: options.timeoutMs ?? 30 * 60_000, signal: options.signal },
    );
    const text = await response.text();
    const parsed = parseJson(text);
    if (!response.ok) throw await this.errorFor(sandboxId, response.status, parsed, `upload ${path}`);
    const r = parsed as { path?: string; size?: number } | undefined;
    return { path: r?.path ?? path, size: r?.size ?? total ?? 0 };
  }

  /** `GET download`: the file's bytes as a stream (no size limit). */
  async download(sandboxId: string, path: string, options: { onProgress?: ProgressCallback; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Readable & { size: number | undefined }> {
    const query = new URLSearchParams({ path, sandbox_id: sandboxId });
    const response = await this.send(
      sandboxId,
      `download ${path}`,
      (auth) => ({ url: `${auth.base}/download?${query}`, init: { method: 'GET', headers: this.headers(auth) } }),
      { replayable: true, retry5xx: true, retry408: false, timeoutMs: options.timeoutMs ?? 30 * 60_000, signal: options.signal },
    );
    if (!response.ok || !response.body) {
      const text = await response.text();
      throw await this.errorFor(sandboxId, response.status, parseJson(text), `download ${path}`);
    }
    const length = Number(response.headers.get('content-length'));
    const size = Number.isFinite(length) && response.headers.get('content-length') !== null ? length : undefined;
    const stream = Readable.fromWeb(response.body as unknown as WebReadableStream<Uint8Array>) as Readable & { size: number | undefined };
    stream.size = size;
    if (options.onProgress) {
      let received = 0;
      const report = options.onProgress;
      stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
        report(received, size);
      });
    }
    return stream;
  }

  /** `GET read-file`: a window of a text file (at most 10 MiB; a negative `offset` counts from the end). */
  async readFile(sandboxId: string, path: string, options: { offset?: number; length?: number; timeoutMs?: number } = {}): Promise<ReadFileResult> {
    const query = new URLSearchParams({ path });
    if (options.offset !== undefined) query.set('offset', String(options.offset));
    if (options.length !== undefined) query.set('length', String(options.length));
    const response = await this.send(
      sandboxId,
      `read-file ${path}`,
      (auth) => ({ url: `${auth.base}/read-file?${query}`, init: { method: 'GET', headers: this.headers(auth) } }),
      { replayable: true, retry5xx: true, retry408: true, timeoutMs: options.timeoutMs ?? 30_000 },
    );
    const text = await response.text();
    const parsed = parseJson(text);
    if (!response.ok) throw await this.errorFor(sandboxId, response.status, parsed, `read-file ${path}`);
    const r = parsed as { content: string; size: number; total_size?: number; offset?: number; truncated?: boolean };
    return { content: r.content, size: r.size, totalSize: r.total_size, offset: r.offset, truncated: r.truncated };
  }
}

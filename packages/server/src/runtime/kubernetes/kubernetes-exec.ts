import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { stringify } from 'node:querystring';
import { PassThrough, Writable } from 'node:stream';
import type { Readable } from 'node:stream';
import type { KubeConfig } from '@kubernetes/client-node';
import WebSocket from 'ws';
import { RuntimeError } from '../runtime.js';
import type { ExecExit, ExecProcess, ExecRequest } from '../runtime.js';
import { HELPER_DIR, HELPER_PATH } from './pod-spec.js';
import { KILL_TREE_SCRIPT } from '../kill-tree-script.js';
import { streamSettled } from '../../util/stream-settled.js';

/** Channels of the `v4.channel.k8s.io` exec protocol (first byte of every binary message). */
const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const STATUS = 3;
const RESIZE = 4;

/**
 * Environment variable the driver sets on every exec so its process tree can be found again for
 * `kill()`: children inherit it; the value is a random id per exec.
 */
export const EXEC_MARKER_ENV = 'CORRAL_EXEC_ID';

/** How long `resize()` waits after sending a size, for the kubelet to apply it (see there). */
const RESIZE_SETTLE_MS = 150;

/** Commands whose argv (in bytes) exceeds this travel in a file, not in the exec URL. */
const LARGE_ARGV = 64 * 1024;

/** Where an exec runs: a container of a Pod, through the API server of `config`. */
export interface PodExecTarget {
  config: KubeConfig;
  namespace: string;
  pod: string;
  container: string;
}

/** What the status channel says at the end of an exec. */
interface ExecStatus {
  status?: string;
  message?: string;
  reason?: string;
  details?: { causes?: Array<{ reason?: string; message?: string }> };
}

/** Exit code from the status channel's message: Success is 0; NonZeroExitCode carries it in a cause. */
export function exitCodeOf(status: ExecStatus): number | undefined {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  const code = Number(cause?.message);
  return Number.isInteger(code) ? code : undefined;
}

/**
 * Opens a raw exec of `command` (no helper) over the API server's websocket. Resolves once the
 * connection is up; rejects with `RuntimeError('NOT_FOUND')` when the Pod or container is gone.
 */
export async function openExecSocket(target: PodExecTarget, command: string[], options: { stdin: boolean; tty: boolean }): Promise<WebSocket> {
  const cluster = target.config.getCurrentCluster();
  if (!cluster) throw new RuntimeError('RUNTIME_ERROR', 'the kubeconfig names no cluster');
  const query = stringify({
    command,
    container: target.container,
    stdin: options.stdin,
    stdout: true,
    stderr: !options.tty,
    tty: options.tty,
  });
  const url = `${cluster.server.replace(/^http/, 'ws')}/api/v1/namespaces/${encodeURIComponent(target.namespace)}/pods/${encodeURIComponent(target.pod)}/exec?${query}`;
  const wsOptions: WebSocket.ClientOptions = { maxPayload: 64 * 1024 * 1024 };
  await target.config.applyToHTTPSOptions(wsOptions);
  return new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url, ['v4.channel.k8s.io'], wsOptions);
    ws.binaryType = 'nodebuffer';
    ws.once('open', () => {
      ws.removeAllListeners('error');
      resolve(ws);
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => {
        let message = body;
        try {
          message = (JSON.parse(body) as { message?: string }).message ?? body;
        } catch {
          // Not JSON: the body as it is.
        }
        const gone = res.statusCode === 404 || /not found|completed pod|container not running|is not running|terminated/i.test(message);
        reject(new RuntimeError(gone ? 'NOT_FOUND' : 'RUNTIME_ERROR', `exec in ${target.pod}: ${res.statusCode ?? ''} ${message.trim()}`));
      });
      res.on('error', reject);
    });
    ws.once('error', (error) => reject(new RuntimeError('RUNTIME_ERROR', `exec in ${target.pod}: ${error.message}`, { cause: error })));
  });
}

/** Builds the helper's argv for a request (the command itself may travel in `argvFile`). */
function helperArgv(request: ExecRequest, execId: string, argvFile: string | null): string[] {
  const argv = [HELPER_PATH, 'exec', `--env=${EXEC_MARKER_ENV}=${execId}`];
  for (const [key, value] of Object.entries(request.env ?? {})) argv.push(`--env=${key}=${value}`);
  if (request.cwd) argv.push(`--cwd=${request.cwd}`);
  if (request.user) argv.push(`--user=${request.user}`);
  if (request.stdin === true && request.tty === undefined) argv.push('--framed-stdin');
  if (request.tty !== undefined) argv.push('--wait-tty-size');
  if (argvFile) argv.push(`--argv-file=${argvFile}`);
  argv.push('--');
  if (!argvFile) argv.push(...request.argv);
  return argv;
}

/** Runs a raw command with `input` as its whole stdin and waits for it; resolves with its exit code and stderr. */
export async function runRaw(target: PodExecTarget, command: string[], input?: Buffer): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const ws = await openExecSocket(target, command, { stdin: input !== undefined, tty: false });
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let exitCode: number | undefined;
    ws.on('message', (data: Buffer) => {
      const channel = data[0];
      const payload = data.subarray(1);
      if (channel === STDOUT && stdout.length < 1024 * 1024) stdout += payload.toString('utf8');
      else if (channel === STDERR && stderr.length < 64 * 1024) stderr += payload.toString('utf8');
      else if (channel === STATUS) {
        try {
          exitCode = exitCodeOf(JSON.parse(payload.toString('utf8')) as ExecStatus);
        } catch {
          exitCode = undefined;
        }
      }
    });
    ws.once('close', () => resolve({ exitCode: exitCode ?? 137, stdout, stderr }));
    ws.on('error', () => undefined);
    if (input !== undefined) {
      for (let offset = 0; offset < input.length; offset += 1024 * 1024) {
        ws.send(Buffer.concat([Buffer.from([STDIN]), input.subarray(offset, offset + 1024 * 1024)]));
      }
    }
  });
}

/** Encodes argv as the helper's argv file: every argument followed by a NUL. */
function argvFileContent(argv: string[]): Buffer {
  return Buffer.concat(argv.flatMap((a) => [Buffer.from(a, 'utf8'), Buffer.alloc(1)]));
}

/**
 * Starts `request` in the sandbox container through the API server's exec websocket, under the
 * driver's helper (`corral-agent exec`, uploaded into every sandbox at create), which switches the
 * user, sets env and cwd and turns framed stdin into a pipe that can be closed. Large commands
 * travel in a file written by a first exec.
 */
export async function startPodExec(
  target: PodExecTarget,
  request: ExecRequest,
  onExit?: (exitCode: number) => void,
  live?: Set<() => void>,
): Promise<ExecProcess> {
  const execId = randomUUID();
  let argvFile: string | null = null;
  const argvBytes = request.argv.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0);
  if (argvBytes > LARGE_ARGV) {
    // In the helper's volume: the helper reads (and deletes) it before it switches users.
    argvFile = `${HELPER_DIR}/argv-${execId}`;
    const content = argvFileContent(request.argv);
    const written = await runRaw(target, ['/bin/sh', '-c', 'umask 077; head -c "$1" > "$2" && [ "$(wc -c < "$2")" -eq "$1" ]', 'corral-argv', String(content.length), argvFile], content);
    if (written.exitCode !== 0) throw new RuntimeError('RUNTIME_ERROR', `could not pass the command to the sandbox (exit ${written.exitCode}): ${written.stderr.trim()}`);
  }
  const tty = request.tty !== undefined;
  const ws = await openExecSocket(target, helperArgv(request, execId, argvFile), { stdin: request.stdin === true || tty, tty });
  const proc = new PodExecProcess(target, ws, execId, request, onExit);
  if (live) {
    // The driver drops the connection once the Pod is removed: an exec stuck in the container
    // runtime (runc blocked on a FIFO /etc/passwd) would otherwise never end.
    const abandon = (): void => ws.terminate();
    live.add(abandon);
    void proc.wait().then(() => live.delete(abandon));
  }
  return proc;
}

/** A process started through the Kubernetes exec API. */
class PodExecProcess implements ExecProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable | null;
  private exitCode: number | undefined;
  private readonly closed: Promise<void>;
  private exitPromise: Promise<ExecExit> | undefined;

  constructor(
    private readonly target: PodExecTarget,
    private readonly ws: WebSocket,
    private readonly execId: string,
    private readonly request: ExecRequest,
    private readonly onExit: ((exitCode: number) => void) | undefined,
  ) {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    this.stdout = stdout;
    this.stderr = stderr;
    const tty = request.tty !== undefined;
    let paused = false;
    const resume = (): void => {
      if (paused) {
        paused = false;
        ws.resume();
      }
    };
    stdout.on('drain', resume);
    stderr.on('drain', resume);
    ws.on('message', (data: Buffer) => {
      const channel = data[0];
      const payload = data.subarray(1);
      let ok = true;
      if (channel === STDOUT) ok = stdout.write(payload);
      else if (channel === STDERR) ok = stderr.write(payload);
      else if (channel === STATUS) {
        try {
          this.exitCode = exitCodeOf(JSON.parse(payload.toString('utf8')) as ExecStatus);
        } catch {
          this.exitCode = undefined;
        }
      }
      if (!ok && !paused) {
        paused = true;
        ws.pause();
      }
    });
    ws.on('error', () => undefined);
    this.closed = new Promise<void>((resolve) => {
      ws.once('close', () => {
        stdout.end();
        stderr.end();
        resolve();
      });
    });
    this.exitPromise = Promise.all([this.closed, streamSettled(stdout), streamSettled(stderr)]).then(() => {
      const exitCode = this.exitCode ?? 137;
      this.onExit?.(exitCode);
      return { exitCode };
    });
    this.exitPromise.catch(() => undefined);
    if (request.stdin === true || tty) {
      this.stdin = tty ? new TtyStdin(ws) : new FramedStdin(ws);
    } else {
      this.stdin = null;
    }
    if (tty && request.tty) {
      const body = Buffer.from(JSON.stringify({ Width: request.tty.cols, Height: request.tty.rows }), 'utf8');
      ws.send(Buffer.concat([Buffer.from([RESIZE]), body]));
    }
  }

  wait(): Promise<ExecExit> {
    this.exitPromise ??= Promise.resolve({ exitCode: this.exitCode ?? 137 });
    return this.exitPromise;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const name = signal.replace(/^SIG/, '');
    if (!/^[A-Z0-9+-]+$/.test(name)) throw new Error(`invalid signal ${signal}`);
    if (this.ws.readyState === WebSocket.CLOSED) return;
    const done = runRaw(this.target, ['/bin/sh', '-c', KILL_TREE_SCRIPT, 'corral-kill', name, `${EXEC_MARKER_ENV}=${this.execId}`, '30', '1']).catch((error: unknown) => {
      if (error instanceof RuntimeError && error.kind === 'NOT_FOUND') return undefined;
      throw error;
    });
    // The exec may end (and its connection close) before the killer finishes its rounds.
    await Promise.race([done, this.closed]);
  }

  async resize(rows: number, cols: number): Promise<void> {
    if (this.request.tty === undefined || this.ws.readyState !== WebSocket.OPEN) return;
    const body = Buffer.from(JSON.stringify({ Width: cols, Height: rows }), 'utf8');
    await new Promise<void>((resolve) => this.ws.send(Buffer.concat([Buffer.from([RESIZE]), body]), () => resolve()));
    // The kubelet applies a resize in a goroutine of its own (a container runtime call) while the
    // stdin that follows goes straight to the PTY: give it a moment so input sent after resize()
    // resolves sees the new size. Nothing reports when the size is applied.
    await new Promise((resolve) => setTimeout(resolve, RESIZE_SETTLE_MS));
  }
}

/** Stdin for the helper's `--framed-stdin`: every chunk as a length-prefixed frame; `end()` sends the empty frame (EOF). */
class FramedStdin extends Writable {
  constructor(private readonly ws: WebSocket) {
    super();
  }

  private send(payload: Buffer, callback: (error?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      callback();
      return;
    }
    this.ws.send(payload, (error) => callback(error ?? null));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const frames: Buffer[] = [];
    for (let offset = 0; offset < chunk.length; offset += 1024 * 1024) {
      const part = chunk.subarray(offset, offset + 1024 * 1024);
      const head = Buffer.alloc(5);
      head[0] = STDIN;
      head.writeUInt32BE(part.length, 1);
      frames.push(head, part);
    }
    this.send(Buffer.concat(frames), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.send(Buffer.from([STDIN, 0, 0, 0, 0]), callback);
  }
}

/** Stdin of a PTY exec: bytes as they are; `end()` types Ctrl-D. */
class TtyStdin extends Writable {
  constructor(private readonly ws: WebSocket) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      callback();
      return;
    }
    this.ws.send(Buffer.concat([Buffer.from([STDIN]), chunk]), (error) => callback(error ?? null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) {
      callback();
      return;
    }
    this.ws.send(Buffer.from([STDIN, 4]), () => callback());
  }
}

import { randomUUID } from 'node:crypto';
import { PassThrough, Writable } from 'node:stream';
import type { Readable, Duplex } from 'node:stream';
import type Docker from 'dockerode';
import type { ExecExit, ExecProcess, ExecRequest } from '../runtime.js';
import { DockerStreamDemux } from './docker-stream-demux.js';
import { orAfter } from '../../util/time.js';
import { KILL_TREE_SCRIPT } from '../kill-tree-script.js';
import { streamSettled } from '../../util/stream-settled.js';

/**
 * Environment variable the driver sets on every exec so the process tree it starts can be found
 * again for `kill()`. Children inherit it; the value is a random id per exec.
 */
export const EXEC_MARKER_ENV = 'CORRAL_EXEC_ID';

/** What `startDockerExec` needs. */
export interface DockerExecOptions {
  docker: Docker;
  containerId: string;
  request: ExecRequest;
  /**
   * How long the exec may take to start (its process to appear) before `unstick` is called, every
   * 250 ms, until it starts or ends. Default {@link DEFAULT_EXEC_START_TIMEOUT_MS}.
   */
  startTimeoutMs?: number;
  /** Ends the container's execs stuck starting (the driver kills their `runc init` from the host). */
  unstick?: () => Promise<number>;
  /**
   * The container's live execs: each adds a function that drops its connection (used once the
   * container is removed, when the engine may never close it) and deletes it when its streams end.
   */
  live?: Set<() => void>;
}

/** Default bound on an exec's start (see {@link DockerExecOptions.startTimeoutMs}). */
export const DEFAULT_EXEC_START_TIMEOUT_MS = 10_000;

/** How long reading a finished exec's exit code from the engine may take before it counts as killed. */
const EXIT_INSPECT_BOUND_MS = 15_000;

/** After the start bound, how much longer an exec create or start call is awaited before the exec fails. */
const START_GRACE_MS = 10_000;

/**
 * Watches one exec's start: after the bound it calls `unstick` every 250 ms until the exec's
 * process appeared or the exec ended, and remembers when that ended a stuck start (the exec then
 * failed to start). An exec that is only slow to start is not ended: `unstick` kills only starts
 * blocked opening a FIFO.
 */
class StartGuard {
  readonly deadline: number;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** After the bound, `unstick` ended a start stuck in the container before this exec's process appeared. */
  timedOut = false;

  constructor(
    readonly timeoutMs: number,
    private readonly unstick: (() => Promise<number>) | undefined,
  ) {
    this.deadline = Date.now() + timeoutMs;
    this.timer = setInterval(() => void this.tick(), 250);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (Date.now() < this.deadline || this.running || this.timer === undefined) return;
    this.running = true;
    try {
      if (((await this.unstick?.()) ?? 0) > 0) this.timedOut = true;
    } catch {
      // Retried on the next tick.
    } finally {
      this.running = false;
    }
  }

  /** Unsticks now, without waiting for the bound (kill of an exec that has not started). */
  async force(): Promise<void> {
    if (((await this.unstick?.().catch(() => 0)) ?? 0) > 0) this.timedOut = true;
  }

  /** The exec started or ended: stop watching. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Awaits `promise` (an engine call of this exec), failing once the bound and its grace passed. */
  async bounded<T>(promise: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        promise,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ExecStartTimeout(`${what} did not finish within ${this.timeoutMs + START_GRACE_MS} ms`)), this.deadline + START_GRACE_MS - Date.now());
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** An exec that did not start within its bound. */
export class ExecStartTimeout extends Error {}

/** Why an exec did not start, as the exec's stderr reports it. */
function startFailureMessage(timeoutMs: number): string {
  return `corral: the exec did not start within ${timeoutMs} ms and was ended: the container runtime (runc) reads the sandbox's /etc/passwd and /etc/group on every exec and blocks when they are not regular files (a FIFO, for example)\n`;
}


/**
 * Starts `request` in a container through the exec API and returns a handle on it. The engine
 * calls and the wait for the process to appear are bounded (see {@link DockerExecOptions}).
 */
export async function startDockerExec(options: DockerExecOptions): Promise<ExecProcess> {
  const { docker, containerId, request } = options;
  const guard = new StartGuard(options.startTimeoutMs ?? DEFAULT_EXEC_START_TIMEOUT_MS, options.unstick);
  try {
    const execId = randomUUID();
    const env = Object.entries(request.env ?? {}).map(([k, v]) => `${k}=${v}`);
    env.push(`${EXEC_MARKER_ENV}=${execId}`);
    const tty = request.tty !== undefined;
    const container = docker.getContainer(containerId);
    const exec = await guard.bounded(
      container.exec({
        Cmd: request.argv,
        Env: env,
        WorkingDir: request.cwd,
        User: request.user ?? '',
        Tty: tty,
        AttachStdin: request.stdin === true,
        AttachStdout: true,
        AttachStderr: true,
      }),
      'creating the exec',
    );
    const socket = (await guard.bounded(exec.start({ hijack: true, stdin: request.stdin === true, Tty: tty }), 'starting the exec')) as Duplex;
    if (tty && request.tty !== undefined) {
      await orAfter(exec.resize({ h: request.tty.rows, w: request.tty.cols }).catch(() => undefined), 1000, undefined);
    }
    return new DockerExecProcess(docker, containerId, exec, socket, execId, request, guard, options);
  } catch (error) {
    guard.stop();
    throw error;
  }
}

/** A process started through Docker's exec API. */
class DockerExecProcess implements ExecProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable | null;
  private readonly ended: Promise<void>;
  private exitPromise: Promise<ExecExit> | undefined;
  /** Resolves true once the process appeared, false when the exec ended without one. */
  private readonly startedPromise: Promise<boolean>;

  constructor(
    private readonly docker: Docker,
    private readonly containerId: string,
    private readonly exec: Docker.Exec,
    socket: Duplex,
    private readonly execId: string,
    private readonly request: ExecRequest,
    private readonly guard: StartGuard,
    private readonly options: DockerExecOptions,
  ) {
    let rawStderr: Readable;
    if (request.tty !== undefined) {
      const out = new PassThrough();
      const err = new PassThrough();
      socket.pipe(out);
      err.end();
      this.stdout = out;
      rawStderr = err;
    } else {
      const demux = new DockerStreamDemux();
      socket.pipe(demux);
      this.stdout = demux.stdout;
      rawStderr = demux.stderr;
    }
    // stderr ends with the reason when the exec never started.
    const stderr = new PassThrough();
    rawStderr.pipe(stderr, { end: false });
    rawStderr.once('end', () => {
      if (this.guard.timedOut && !this.processAppeared) stderr.write(startFailureMessage(this.guard.timeoutMs));
      stderr.end();
    });
    rawStderr.once('error', (error: Error) => stderr.destroy(error));
    this.stderr = stderr;
    // Output means the process runs (or ran): it started, however slowly. (The socket already flows
    // into the demultiplexer; one more listener does not change how it is read.)
    socket.once('data', () => {
      this.processAppeared = true;
    });
    socket.on('error', (error: Error) => {
      (this.stdout as PassThrough).destroy(error);
    });
    // A connection dropped by the driver (see `abandon`) ends the output streams too.
    socket.once('close', () => {
      if (this.dropped) {
        this.stdout.destroy();
        rawStderr.destroy();
        stderr.destroy();
      }
    });
    this.stdin = request.stdin === true ? new StdinWriter(socket) : null;
    if (request.stdin !== true) socket.end();
    this.ended = Promise.all([streamSettled(this.stdout), streamSettled(this.stderr)]).then(() => undefined);
    this.startedPromise = this.watchStart(socket);
    const abandon = (): void => {
      this.abandoned = true;
      this.dropped = true;
      socket.destroy();
    };
    options.live?.add(abandon);
    void this.ended.then(() => options.live?.delete(abandon));
  }

  /** The container was removed under this exec and its connection dropped. */
  private abandoned = false;
  /** The driver dropped the exec's connection (abandoned, or it never started). */
  private dropped = false;

  /** The exec's process was seen running. */
  private processAppeared = false;

  /**
   * Polls exec inspect until the process appears (`Pid` set) or the exec ends; the guard ends an
   * exec stuck starting. When the guard cannot (no cgroup access), the connection is dropped once
   * the bound and its grace passed, so the exec's streams end anyway.
   */
  private async watchStart(socket: Duplex): Promise<boolean> {
    let ended = false;
    void this.ended.then(() => (ended = true));
    try {
      for (let attempt = 0; ; attempt++) {
        const info = await orAfter(
          this.exec.inspect().catch((error: unknown) => (isNotFound(error) ? ('gone' as const) : undefined)),
          1000,
          undefined,
        );
        if (info === 'gone' || this.abandoned) {
          // The container was removed: no process will come; end the streams.
          this.dropped = true;
          socket.destroy();
          return false;
        }
        // A process that ran keeps its Pid in exec inspect after it exits (a fast one is never seen Running).
        if (this.processAppeared || (info !== undefined && info.Pid > 0)) {
          this.processAppeared = true;
          return true;
        }
        if (info !== undefined && !info.Running && info.ExitCode !== null) return false;
        if (ended && info === undefined) return false;
        if (Date.now() > this.guard.deadline + START_GRACE_MS) {
          this.dropped = true;
          socket.destroy();
          return false;
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(10 + attempt * 10, 100)));
      }
    } finally {
      this.guard.stop();
    }
  }

  wait(): Promise<ExecExit> {
    this.exitPromise ??= this.ended.then(async () => {
      const appeared = await this.startedPromise;
      if (this.abandoned) return { exitCode: 137 };
      if (!appeared && this.guard.timedOut) return { exitCode: 126 };
      return this.readExitCode();
    });
    return this.exitPromise;
  }

  /** Exec inspect can report Running for a moment after the streams end; poll briefly. */
  private async readExitCode(): Promise<ExecExit> {
    for (let attempt = 0; ; attempt++) {
      let info: Docker.ExecInspectInfo;
      try {
        // Bounded: an engine stuck on the container (a start blocked on a FIFO) answers nothing. The
        // bound is generous, since a loaded engine answers slowly and a made-up 137 would be a lie.
        const answer = await orAfter(this.exec.inspect(), EXIT_INSPECT_BOUND_MS, undefined);
        if (answer === undefined) return { exitCode: 137 };
        info = answer;
      } catch (error) {
        // The container (and with it the exec) was removed while the process ran: it was killed.
        if (isNotFound(error)) return { exitCode: 137 };
        throw error;
      }
      if (!info.Running && info.ExitCode !== null) return { exitCode: info.ExitCode };
      if (attempt > 200) return { exitCode: info.ExitCode ?? 137 };
      await new Promise((r) => setTimeout(r, Math.min(5 + attempt * 5, 50)));
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const name = signal.replace(/^SIG/, '');
    if (!/^[A-Z0-9+-]+$/.test(name)) throw new Error(`invalid signal ${signal}`);
    // Docker starts the process asynchronously; a signal sent before it exists would find nothing.
    let started = await orAfter(this.startedPromise, 2000, undefined);
    if (started === undefined) {
      // Still starting after 2 s: if runc is blocked on a FIFO in the sandbox, end the start itself;
      // if the host is only slow, wait (bounded) for the process and signal it as usual.
      await this.guard.force();
      started = await orAfter(this.startedPromise, this.guard.timeoutMs + START_GRACE_MS, undefined);
    }
    if (started !== true) return;
    const killer = await startDockerExec({
      ...this.options,
      request: { argv: ['/bin/sh', '-c', KILL_TREE_SCRIPT, 'corral-kill', name, `${EXEC_MARKER_ENV}=${this.execId}`, '3', '0'], user: this.request.user },
    }).catch((error: unknown) => {
      // The sandbox is gone or stopped (so is the process), or the engine did not take the exec.
      if (isNotFound(error) || isConflict(error) || error instanceof ExecStartTimeout) return undefined;
      throw error;
    });
    if (!killer) return;
    killer.stdout.resume();
    killer.stderr.resume();
    await killer.wait();
  }

  async resize(rows: number, cols: number): Promise<void> {
    if (this.request.tty === undefined) return;
    await this.exec.resize({ h: rows, w: cols });
  }
}

/**
 * The stdin side of a hijacked exec connection: writes go to the socket, and `end()` half-closes
 * it, which Docker turns into EOF on the process's stdin while output keeps flowing.
 */
class StdinWriter extends Writable {
  constructor(private readonly socket: Duplex) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.socket.destroyed || this.socket.writableEnded) {
      callback();
      return;
    }
    this.socket.write(chunk, (error) => callback(error ?? null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.socket.writableEnded) this.socket.end();
    callback();
  }
}

/** Whether a dockerode error is an HTTP 404. */
export function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { statusCode?: unknown }).statusCode === 404;
}

/** Whether a dockerode error is an HTTP 409 (container not running, name in use). */
export function isConflict(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { statusCode?: unknown }).statusCode === 409;
}

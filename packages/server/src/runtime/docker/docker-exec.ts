import { randomUUID } from 'node:crypto';
import { PassThrough, Writable } from 'node:stream';
import type { Readable, Duplex } from 'node:stream';
import type Docker from 'dockerode';
import type { ExecExit, ExecProcess, ExecRequest } from '../runtime.js';
import { DockerStreamDemux } from './docker-stream-demux.js';

/**
 * Environment variable the driver sets on every exec so the process tree it starts can be found
 * again for `kill()`. Children inherit it; the value is a random id per exec.
 */
export const EXEC_MARKER_ENV = 'CORRAL_EXEC_ID';

/**
 * Shell script run by a second exec (as the same user) to signal an exec's process tree: every
 * process whose environment carries the marker, and the process group each of them leads (runc
 * makes every exec a session and group leader, so the group holds everything it started that did
 * not leave it). Repeats a few times to catch processes forked while it ran.
 * Arguments: $1 signal name, $2 marker (`CORRAL_EXEC_ID=<id>`).
 */
const KILL_SCRIPT = `
sig="$1"; marker="$2"
for round in 1 2 3; do
  found=""
  for d in /proc/[0-9]*; do
    p="\${d#/proc/}"
    [ "$p" = "$$" ] && continue
    [ "$p" = 1 ] && continue
    # One variable per line: busybox grep stops reading a line at the first NUL.
    if tr '\\0' '\\n' < "$d/environ" 2>/dev/null | grep -qxF -e "$marker"; then found="$found $p"; fi
  done
  [ -z "$found" ] && exit 0
  # Groups first, in one go each, so a shell does not see its children die before its own signal.
  # dash needs "--" before a negative pid, busybox ash refuses it: try both.
  for p in $found; do kill -s "$sig" -- "-$p" 2>/dev/null || kill -s "$sig" "-$p" 2>/dev/null || true; done
  for p in $found; do kill -s "$sig" "$p" 2>/dev/null || true; done
  [ "$sig" = KILL ] || exit 0
done
exit 0
`;

/** What `startDockerExec` needs. */
export interface DockerExecOptions {
  docker: Docker;
  containerId: string;
  request: ExecRequest;
}

/** Starts `request` in a container through the exec API and returns a handle on it. */
export async function startDockerExec(options: DockerExecOptions): Promise<ExecProcess> {
  const { docker, containerId, request } = options;
  const execId = randomUUID();
  const env = Object.entries(request.env ?? {}).map(([k, v]) => `${k}=${v}`);
  env.push(`${EXEC_MARKER_ENV}=${execId}`);
  const tty = request.tty !== undefined;
  const container = docker.getContainer(containerId);
  const exec = await container.exec({
    Cmd: request.argv,
    Env: env,
    WorkingDir: request.cwd,
    User: request.user ?? '',
    Tty: tty,
    AttachStdin: request.stdin === true,
    AttachStdout: true,
    AttachStderr: true,
  });
  const socket = (await exec.start({ hijack: true, stdin: request.stdin === true, Tty: tty })) as Duplex;
  if (tty && request.tty !== undefined) {
    await exec.resize({ h: request.tty.rows, w: request.tty.cols }).catch(() => undefined);
  }
  return new DockerExecProcess(docker, containerId, exec, socket, execId, request);
}

/** A process started through Docker's exec API. */
class DockerExecProcess implements ExecProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable | null;
  private readonly ended: Promise<void>;
  private exitPromise: Promise<ExecExit> | undefined;

  constructor(
    private readonly docker: Docker,
    private readonly containerId: string,
    private readonly exec: Docker.Exec,
    socket: Duplex,
    private readonly execId: string,
    private readonly request: ExecRequest,
  ) {
    if (request.tty !== undefined) {
      const out = new PassThrough();
      const err = new PassThrough();
      socket.pipe(out);
      err.end();
      this.stdout = out;
      this.stderr = err;
    } else {
      const demux = new DockerStreamDemux();
      socket.pipe(demux);
      this.stdout = demux.stdout;
      this.stderr = demux.stderr;
    }
    socket.on('error', (error: Error) => {
      (this.stdout as PassThrough).destroy(error);
    });
    this.stdin = request.stdin === true ? new StdinWriter(socket) : null;
    if (request.stdin !== true) socket.end();
    const streamDone = (s: Readable): Promise<void> =>
      new Promise((resolve) => {
        if (s.readableEnded || s.destroyed) resolve();
        s.once('end', () => resolve());
        s.once('close', () => resolve());
        s.once('error', () => resolve());
      });
    this.ended = Promise.all([streamDone(this.stdout), streamDone(this.stderr)]).then(() => undefined);
  }

  wait(): Promise<ExecExit> {
    this.exitPromise ??= this.ended.then(() => this.readExitCode());
    return this.exitPromise;
  }

  /** Exec inspect can report Running for a moment after the streams end; poll briefly. */
  private async readExitCode(): Promise<ExecExit> {
    for (let attempt = 0; ; attempt++) {
      let info: Docker.ExecInspectInfo;
      try {
        info = await this.exec.inspect();
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

  /**
   * Waits (up to ~2 s) until Docker reports the exec's process running. Docker starts it
   * asynchronously, and a signal sent before it exists would find nothing to kill. False when the
   * exec has already finished.
   */
  private async started(): Promise<boolean> {
    for (let attempt = 0; attempt < 40; attempt++) {
      let info: Docker.ExecInspectInfo;
      try {
        info = await this.exec.inspect();
      } catch {
        return false;
      }
      if (info.Running && info.Pid > 0) return true;
      if (!info.Running && info.ExitCode !== null) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const name = signal.replace(/^SIG/, '');
    if (!/^[A-Z0-9+-]+$/.test(name)) throw new Error(`invalid signal ${signal}`);
    if (!(await this.started())) return;
    let stream: Duplex;
    try {
      const killer = await this.docker.getContainer(this.containerId).exec({
        Cmd: ['/bin/sh', '-c', KILL_SCRIPT, 'corral-kill', name, `${EXEC_MARKER_ENV}=${this.execId}`],
        User: this.request.user ?? '',
        AttachStdout: true,
        AttachStderr: true,
      });
      stream = (await killer.start({ hijack: true, stdin: false })) as Duplex;
    } catch (error) {
      // The sandbox is gone or stopped: so is the process.
      if (isNotFound(error) || isConflict(error)) return;
      throw error;
    }
    stream.resume();
    stream.end();
    await new Promise<void>((resolve) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', () => resolve());
    });
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

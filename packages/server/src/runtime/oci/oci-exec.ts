import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { RuntimeError } from '../runtime.js';
import type { ExecExit, ExecProcess, ExecRequest } from '../runtime.js';
import { Frame, FrameReader, connectAgent, execFrame, frame, resizeFrame, u32Frame } from './agent-protocol.js';

/** Environment variable marking every process an exec starts, so `kill()` finds the whole tree. */
export const EXEC_MARKER_ENV = 'CORRAL_EXEC_ID';

/** What an exec needs to know about its sandbox. */
export interface ExecTarget {
  /** The Unix socket the sandbox's agent (its PID 1) accepts exec sessions on. */
  socketPath: string;
  /** Host path of the container's root filesystem (to read /etc/passwd and /etc/group). */
  rootfs: string;
  /** The sandbox's environment (image env merged with the spec env). */
  env: string[];
  workingDir: string;
  /** Host pids of every process in the sandbox (its cgroup). */
  listPids(): Promise<number[]>;
}

/** Resolved process identity. */
interface Identity {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

/**
 * Starts `request` through the sandbox's agent: one connection per process, which carries its
 * stdin, stdout, stderr, signals, PTY size and exit status. The process is forked by the agent
 * inside the sandbox, so it has the sandbox's namespaces, cgroup, capabilities and seccomp filter.
 */
export async function startOciExec(target: ExecTarget, request: ExecRequest): Promise<ExecProcess> {
  const execId = randomUUID();
  const identity = await resolveUser(target.rootfs, request.user);
  const env = new Map<string, string>();
  for (const entry of target.env) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  if (!env.has('HOME')) env.set('HOME', identity.home);
  if (request.tty && !env.has('TERM')) env.set('TERM', 'xterm');
  for (const [k, v] of Object.entries(request.env ?? {})) env.set(k, v);
  env.set(EXEC_MARKER_ENV, execId);
  const start = execFrame({
    argv: request.argv,
    env: [...env].map(([k, v]) => `${k}=${v}`),
    cwd: request.cwd ?? (target.workingDir || '/'),
    uid: identity.uid,
    gid: identity.gid,
    groups: identity.additionalGids,
    tty: request.tty,
    stdin: request.stdin === true || request.tty !== undefined,
  });
  const socket = await connect(target.socketPath);
  socket.write(start);
  return new AgentExecProcess(target, socket, execId, request);
}

function connect(path: string): Promise<Socket> {
  return connectAgent(path).catch((error: NodeJS.ErrnoException) => {
    const gone = error.code === 'ENOENT' || error.code === 'ECONNREFUSED';
    throw new RuntimeError(gone ? 'NOT_FOUND' : 'RUNTIME_ERROR', `the sandbox's agent is not reachable at ${path}: ${error.message}`, { cause: error });
  });
}

/** An exec's output stream; reading resumes the shared socket. */
class OutputStream extends Readable {
  constructor(private readonly onPull: () => void) {
    super();
  }

  override _read(): void {
    this.onPull();
  }
}

class AgentExecProcess implements ExecProcess {
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  readonly stdin: Writable | null;
  private readonly exited: Promise<ExecExit>;
  private exitCode: number | undefined;

  constructor(
    private readonly target: ExecTarget,
    private readonly socket: Socket,
    private readonly execId: string,
    private readonly request: ExecRequest,
  ) {
    const resume = (): void => {
      if (socket.isPaused()) socket.resume();
    };
    this.stdout = new OutputStream(resume);
    this.stderr = new OutputStream(resume);
    this.stdin = request.stdin
      ? new Writable({
          write: (chunk: Buffer, _encoding, callback) => {
            if (socket.destroyed) return callback();
            socket.write(frame(Frame.stdin, chunk), () => callback());
          },
          final: (callback) => {
            if (socket.destroyed) return callback();
            socket.write(frame(Frame.stdinClose), () => callback());
          },
        })
      : null;
    this.stdin?.on('error', () => undefined);
    const reader = new FrameReader();
    const ended = (stream: Readable): Promise<void> =>
      new Promise<void>((resolve) => {
        if (stream.readableEnded) return resolve();
        stream.once('end', () => resolve());
        stream.once('close', () => resolve());
      });
    const outputsEnded = Promise.all([ended(this.stdout), ended(this.stderr)]);
    this.exited = new Promise<ExecExit>((resolve) => {
      const finish = (): void => {
        this.stdout.push(null);
        this.stderr.push(null);
        // An agent that vanished (the sandbox was removed or killed) ended the process with it.
        const exitCode = this.exitCode ?? 137;
        void outputsEnded.then(() => resolve({ exitCode }));
      };
      socket.once('close', finish);
    });
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const { type, payload } of frames) {
        if (type === Frame.stdout) {
          if (!this.stdout.push(payload)) socket.pause();
        } else if (type === Frame.stderr) {
          if (!this.stderr.push(payload)) socket.pause();
        } else if (type === Frame.exit && payload.length >= 4) {
          this.exitCode = payload.readUInt32BE(0);
          // The agent waits for this side to close before it closes its own (see corral-agent.c).
          socket.end();
        }
      }
    });
  }

  wait(): Promise<ExecExit> {
    return this.exited;
  }

  /**
   * Has the agent signal the process's group (or the process), then, for SIGKILL, also kills from
   * the host every process in the sandbox that carries this exec's marker (children that left the
   * group with setsid) until none is left.
   */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const number = osConstants.signals[signal];
    if (!this.socket.destroyed && this.exitCode === undefined) this.socket.write(u32Frame(Frame.signal, number));
    if (signal !== 'SIGKILL') return;
    for (let round = 0; round < 3; round++) {
      const found = await this.markedPids();
      if (found.length === 0) return;
      for (const pid of found) {
        try {
          process.kill(pid, signal);
        } catch {
          // Gone.
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Sets the sandbox-side PTY size (the kernel sends SIGWINCH to its foreground process group). */
  async resize(rows: number, cols: number): Promise<void> {
    if (this.request.tty === undefined || this.socket.destroyed) return;
    await new Promise<void>((resolve) => this.socket.write(resizeFrame(rows, cols), () => resolve()));
  }

  /** Host pids of the sandbox processes that carry this exec's marker. */
  private async markedPids(): Promise<number[]> {
    const marker = Buffer.from(`\0${EXEC_MARKER_ENV}=${this.execId}\0`);
    const nul = Buffer.from([0]);
    const found: number[] = [];
    for (const pid of await this.target.listPids().catch(() => [] as number[])) {
      const environ = await readFile(`/proc/${pid}/environ`).catch(() => undefined);
      if (environ && Buffer.concat([nul, environ, nul]).indexOf(marker) >= 0) found.push(pid);
    }
    return found.sort((a, b) => a - b);
  }
}

/**
 * Resolves `root`, `uid`, `uid:gid`, `name` or `name:group` against the sandbox's /etc/passwd and
 * /etc/group (read without following symlinks, so an image cannot point them at host files).
 */
export async function resolveUser(rootfs: string, user: string | undefined): Promise<Identity> {
  if (user === undefined || user === '' || user === 'root' || user === '0') return { uid: 0, gid: 0, additionalGids: [], home: '/root' };
  const [userPart = '', groupPart] = user.split(':');
  const passwd = parseColonFile(await readNoFollow(rootfs, 'etc/passwd'));
  let uid: number;
  let gid: number | undefined;
  let home = '/';
  let name: string | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = passwd.find((f) => f[2] === userPart);
    if (entry) {
      gid = Number(entry[3]);
      home = entry[5] || '/';
      name = entry[0];
    }
  } else {
    const entry = passwd.find((f) => f[0] === userPart);
    if (!entry) throw new Error(`unable to find user ${userPart}: no matching entries in passwd file`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
    home = entry[5] || '/';
    name = entry[0];
  }
  const groups = parseColonFile(await readNoFollow(rootfs, 'etc/group'));
  if (groupPart !== undefined && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((f) => f[0] === groupPart);
      if (!g) throw new Error(`unable to find group ${groupPart}: no matching entries in group file`);
      gid = Number(g[2]);
    }
  }
  const additionalGids =
    name !== undefined ? groups.filter((f) => (f[3] ?? '').split(',').includes(name)).map((f) => Number(f[2])).filter((g) => Number.isInteger(g)) : [];
  return { uid, gid: gid ?? uid, additionalGids, home };
}

async function readNoFollow(rootfs: string, relative: string): Promise<string> {
  let handle;
  try {
    // O_NOFOLLOW covers the last component; /etc itself must not be a symlink either.
    const etc = await open(join(rootfs, 'etc'), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_DIRECTORY);
    await etc.close();
    handle = await open(join(rootfs, relative), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    return await handle.readFile('utf8');
  } catch {
    return '';
  } finally {
    await handle?.close();
  }
}

function parseColonFile(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

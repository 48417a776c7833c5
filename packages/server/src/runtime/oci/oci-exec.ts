import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { Readable, Writable } from 'node:stream';
import { RuntimeError } from '../runtime.js';
import type { ExecExit, ExecProcess, ExecRequest } from '../runtime.js';
import { Frame, FrameReader, connectAgent, execFrame, frame, resizeFrame, u32Frame } from './agent-protocol.js';
import { streamSettled } from '../../util/stream-settled.js';

/** Environment variable marking every process an exec starts, so the agent's SIGKILL finds the whole tree. */
export const EXEC_MARKER_ENV = 'CORRAL_EXEC_ID';

/** What an exec needs to know about its sandbox. */
export interface ExecTarget {
  /** The Unix socket the sandbox's agent (its PID 1) accepts exec sessions on. */
  socketPath: string;
  /** The sandbox's environment (image env merged with the spec env). */
  env: string[];
  workingDir: string;
}

/** Whether `user` means root, which needs no lookup (uid 0, gid 0, HOME /root). */
function isRoot(user: string | undefined): boolean {
  return user === undefined || user === '' || user === 'root' || user === '0';
}

/**
 * Starts `request` through the sandbox's agent: one connection per process, which carries its
 * stdin, stdout, stderr, signals, PTY size and exit status. The process is forked by the agent
 * inside the sandbox, so it has the sandbox's namespaces, cgroup, capabilities and seccomp filter.
 * A `user` other than root is resolved by the agent from the sandbox's own /etc/passwd and
 * /etc/group: the server never opens files inside a sandbox.
 */
export async function startOciExec(target: ExecTarget, request: ExecRequest): Promise<ExecProcess> {
  const execId = randomUUID();
  const root = isRoot(request.user);
  const env = new Map<string, string>();
  for (const entry of target.env) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  // For other users the agent adds HOME from /etc/passwd when the environment has none.
  if (root && !env.has('HOME')) env.set('HOME', '/root');
  if (request.tty && !env.has('TERM')) env.set('TERM', 'xterm');
  for (const [k, v] of Object.entries(request.env ?? {})) env.set(k, v);
  env.set(EXEC_MARKER_ENV, execId);
  const start = execFrame({
    argv: request.argv,
    env: [...env].map(([k, v]) => `${k}=${v}`),
    cwd: request.cwd ?? (target.workingDir || '/'),
    uid: 0,
    gid: 0,
    groups: [],
    tty: request.tty,
    stdin: request.stdin === true || request.tty !== undefined,
    ...(root ? {} : { user: request.user }),
  });
  const socket = await connect(target.socketPath);
  socket.write(start);
  return new AgentExecProcess(socket, request);
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
    private readonly socket: Socket,
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
    const outputsEnded = Promise.all([streamSettled(this.stdout), streamSettled(this.stderr)]);
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
   * Has the agent signal the process's group (or the process). For SIGKILL the agent also kills
   * every process of the sandbox that carries this exec's marker (children that left the group
   * with setsid), pinning each with a pidfd before it checks the marker. The agent is the
   * process's parent, so no pid it signals can have been reused; the server signals nothing itself.
   */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const number = osConstants.signals[signal];
    if (this.socket.destroyed || this.exitCode !== undefined) return;
    await new Promise<void>((resolve) => this.socket.write(u32Frame(Frame.signal, number), () => resolve()));
  }

  /** Sets the sandbox-side PTY size (the kernel sends SIGWINCH to its foreground process group). */
  async resize(rows: number, cols: number): Promise<void> {
    if (this.request.tty === undefined || this.socket.destroyed) return;
    await new Promise<void>((resolve) => this.socket.write(resizeFrame(rows, cols), () => resolve()));
  }
}

import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { Readable, Writable } from 'node:stream';
import type { ExecExit, ExecProcess, ExecRequest } from './runtime.js';
import { Frame, FrameReader, frame, resizeFrame, u32Frame } from './agent-protocol.js';
import { streamSettled } from '../util/stream-settled.js';

/** An exec's output stream; reading resumes the shared socket. */
class OutputStream extends Readable {
  constructor(private readonly onPull: () => void) {
    super();
  }

  override _read(): void {
    this.onPull();
  }
}

/**
 * One process of `corral-agent init` on a connected socket whose exec frame was sent: stdout,
 * stderr, stdin, signals, resize and the exit status over the agent's frames
 * (`agent-protocol.ts`). Used by the `oci` driver (Unix socket) and the `kubernetes` driver (TCP).
 */
export class AgentExecProcess implements ExecProcess {
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

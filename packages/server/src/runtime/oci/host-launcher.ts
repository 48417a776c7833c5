import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { useToolLauncher } from '../run-tool.js';
import type { LaunchedRun, ToolLauncher, ToolOptions } from '../run-tool.js';
import { Frame, FrameReader, connectAgent, execFrame, frame, u32Frame } from '../agent-protocol.js';

/** Output kept per stream (the end of it). */
const OUTPUT_LIMIT = 1024 * 1024;

/**
 * Starts host tools (mount, ip, mkfs, the runtime, sandbox shims) through one long-lived
 * `corral-agent init --listen` on the host instead of `child_process.spawn`: Node forks its whole
 * address space for every spawn (~5 ms of blocked event loop each on a busy server, measured),
 * while the agent is a small static process. The agent's command is `cat` on a pipe from this
 * process, so it exits with the server. When the agent is not (or no longer) reachable, callers
 * fall back to `spawn` and the launcher restarts it.
 */
export class HostLauncher implements ToolLauncher {
  private child: ChildProcess | undefined;
  private ready = false;
  private starting: Promise<void> | undefined;
  private readonly env: string[];

  constructor(
    private readonly agentBinary: string,
    private readonly socketPath: string,
  ) {
    this.env = Object.entries(process.env)
      .filter((e): e is [string, string] => e[1] !== undefined && !e[0].includes('='))
      .map(([k, v]) => `${k}=${v}`);
  }

  /** Starts the agent (once) and resolves when it accepts connections, or after 2 s without it. */
  start(): Promise<void> {
    this.starting ??= (async () => {
      // A socket left by an agent that died would look ready before the new one listens.
      rmSync(this.socketPath, { force: true });
      const child = spawn(this.agentBinary, ['init', `--listen=${this.socketPath}`, '--', 'cat'], { stdio: ['pipe', 'ignore', 'inherit'], cwd: '/' });
      this.child = child;
      child.once('error', () => this.lost(child));
      child.once('exit', () => this.lost(child));
      child.unref();
      (child.stdin as unknown as Socket | null)?.unref();
      for (let i = 0; i < 400 && !this.ready && this.child === child; i++) {
        if (existsSync(this.socketPath)) this.ready = true;
        else await new Promise((r) => setTimeout(r, 5));
      }
    })();
    return this.starting;
  }

  private lost(child: ChildProcess): void {
    if (this.child !== child) return;
    this.ready = false;
    this.child = undefined;
    this.starting = undefined;
  }

  /** True while the agent accepts work. */
  get available(): boolean {
    return this.ready;
  }

  /**
   * Runs `command` to completion through the agent. Resolves undefined when the agent cannot be
   * reached (the caller spawns the tool itself).
   */
  async run(command: string, args: readonly string[], options: ToolOptions = {}): Promise<LaunchedRun | undefined> {
    const socket = await this.connect();
    if (!socket) return undefined;
    return new Promise<LaunchedRun>((resolve) => {
      let stdout = '';
      let stderr = '';
      let exitCode: number | null = null;
      const reader = new FrameReader();
      const timer = options.timeoutMs !== undefined ? setTimeout(() => socket.write(u32Frame(Frame.signal, osConstants.signals.SIGKILL)), options.timeoutMs) : undefined;
      socket.on('data', (chunk: Buffer) => {
        for (const { type, payload } of reader.push(chunk)) {
          if (type === Frame.stdout) stdout = (stdout + payload.toString('utf8')).slice(-OUTPUT_LIMIT);
          else if (type === Frame.stderr) stderr = (stderr + payload.toString('utf8')).slice(-OUTPUT_LIMIT);
          else if (type === Frame.exit) {
            exitCode = payload.readUInt32BE(0);
            // The agent waits for this side to close before it closes its own (see corral-agent.c).
            socket.end();
          }
        }
      });
      socket.on('error', () => undefined);
      socket.once('close', () => {
        if (timer) clearTimeout(timer);
        resolve({ stdout, stderr, exitCode });
      });
      socket.write(this.execOf(command, args, { stdin: true, background: options.background }));
      if (options.input !== undefined && options.input.length > 0) socket.write(frame(Frame.stdin, Buffer.from(options.input)));
      socket.write(frame(Frame.stdinClose));
    });
  }

  /**
   * Starts `command` without waiting for it (a sandbox shim, which puts itself in its own session
   * and outlives the server). Resolves true once it runs, false when the agent is unreachable.
   */
  async launch(command: string, args: readonly string[]): Promise<boolean> {
    const socket = await this.connect();
    if (!socket) return false;
    return new Promise<boolean>((resolve) => {
      const reader = new FrameReader();
      socket.on('data', (chunk: Buffer) => {
        if (reader.push(chunk).some((f) => f.type === Frame.pid)) {
          resolve(true);
          socket.destroy();
        }
      });
      socket.on('error', () => undefined);
      socket.once('close', () => resolve(false));
      socket.write(this.execOf(command, args, { stdin: false }));
    });
  }

  /** The exec frame for a host tool: this process's environment and ids, cwd `/`. */
  private execOf(command: string, args: readonly string[], how: { stdin: boolean; background?: boolean }): Buffer {
    return execFrame({ argv: [command, ...args], env: this.env, cwd: '/', uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, groups: [], ...how });
  }

  private async connect(): Promise<Socket | undefined> {
    if (!this.ready) {
      void this.start();
      return undefined;
    }
    // On an error the caller spawns the tool itself this time; the agent is restarted only once it exited.
    return connectAgent(this.socketPath).catch(() => undefined);
  }
}

let shared: HostLauncher | undefined;

/** Routes `runTool` and shim starts through `launcher` (the oci runtime sets it up in `init()`). */
export function useHostLauncher(launcher: HostLauncher | undefined): void {
  shared = launcher;
  useToolLauncher(launcher);
}

/** The process-wide launcher, when one is set. */
export function hostLauncher(): HostLauncher | undefined {
  return shared;
}

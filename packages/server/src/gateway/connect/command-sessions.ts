import type { Readable } from 'node:stream';
import type { ExecProcess } from '../../runtime/runtime.js';
import { writeDrained } from '../write-drained.js';
import type { CommandSpec } from './gen/command_session_pb.js';
import type { EndEvent, SessionEvent } from './session-events.js';

/** A `CommandSessionSelector` with its oneof set: a process by its gateway pid or by its tag. */
export type ProcessSelector = { case: 'pid'; value: number } | { case: 'tag'; value: string };

/**
 * Where one stream (a `Start` or `Connect` response) receives a process's events. `send`
 * returns false while the stream is congested; the session then pauses the process's output
 * until `drained` is called.
 */
export interface SessionListener {
  send(event: SessionEvent): boolean;
}

/** How a session ended: an `EndEvent`, or an error from the runtime. */
export type SessionOutcome = { ok: true; end: EndEvent } | { ok: false; error: unknown };

/**
 * One process started by `Start`: its gateway-assigned pid, optional tag, spec and the streams
 * attached to it. Output goes to every attached listener; with none attached it is dropped.
 */
export class CommandSession {
  private readonly listeners = new Set<SessionListener>();
  private readonly congested = new Set<SessionListener>();
  private readonly outputs: Readable[];
  /** Resolves once the process has exited and its output has been delivered. */
  readonly outcome: Promise<SessionOutcome>;
  /** Set once `outcome` has resolved. */
  finished = false;
  /** The last stdin write; the next one waits for it. */
  private writing: Promise<void> = Promise.resolve();

  constructor(
    readonly sandboxId: string,
    readonly pid: number,
    readonly tag: string | undefined,
    readonly spec: CommandSpec,
    readonly pty: boolean,
    readonly proc: ExecProcess,
  ) {
    this.outputs = [proc.stdout, proc.stderr];
    const forward = (stream: Readable, name: 'stdout' | 'stderr'): void => {
      stream.on('data', (chunk: Buffer) => this.emit({ kind: 'data', stream: pty ? 'pty' : name, data: chunk }));
      stream.on('error', () => undefined);
    };
    forward(proc.stdout, 'stdout');
    forward(proc.stderr, 'stderr');
    proc.stdin?.on('error', () => undefined);
    this.outcome = proc.wait().then(
      ({ exitCode }): SessionOutcome => ({ ok: true, end: { exitCode, exited: true, status: 'exited' } }),
      (error: unknown): SessionOutcome => ({ ok: false, error }),
    );
    void this.outcome.then(() => (this.finished = true));
  }

  private emit(event: SessionEvent): void {
    for (const listener of this.listeners) {
      if (!listener.send(event)) this.congested.add(listener);
    }
    if (this.congested.size > 0) for (const s of this.outputs) s.pause();
  }

  /** Starts delivering events to `listener`. */
  attach(listener: SessionListener): void {
    this.listeners.add(listener);
  }

  /** Stops delivering to `listener`; returns how many listeners are left. */
  detach(listener: SessionListener): number {
    this.listeners.delete(listener);
    this.drained(listener);
    return this.listeners.size;
  }

  /** Tells the session a congested listener can take more. */
  drained(listener: SessionListener): void {
    this.congested.delete(listener);
    if (this.congested.size === 0) for (const s of this.outputs) s.resume();
  }

  /** True when the process reads input (it was started with `stdin: true` or a PTY). */
  get acceptsInput(): boolean {
    return this.proc.stdin !== null;
  }

  /**
   * Writes to the process's stdin (the PTY's input with a PTY), after any earlier write, and
   * resolves once the stdin has taken it (drained below its high-water mark): a process that
   * does not read holds its writers back instead of filling the server's memory.
   */
  write(data: Buffer): Promise<void> {
    const step = this.writing.then(async () => {
      const stdin = this.proc.stdin;
      if (stdin) await writeDrained(stdin, data);
    });
    this.writing = step.catch(() => undefined);
    return step;
  }

  /** Signals the process tree; errors (the process already gone) are ignored. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    await this.proc.kill(signal).catch(() => undefined);
  }
}

/**
 * Every running `command_session` process of a server, by sandbox. Pids are assigned per
 * sandbox from 1 upwards and never reused while the server runs.
 */
export class CommandSessionRegistry {
  private readonly bySandbox = new Map<string, Map<number, CommandSession>>();
  private readonly nextPid = new Map<string, number>();

  /** Reserves the next pid of a sandbox. */
  allocatePid(sandboxId: string): number {
    const pid = this.nextPid.get(sandboxId) ?? 1;
    this.nextPid.set(sandboxId, pid + 1);
    return pid;
  }

  /** Registers a started session; it is removed once its process has ended. */
  add(session: CommandSession): void {
    let sessions = this.bySandbox.get(session.sandboxId);
    if (!sessions) {
      sessions = new Map();
      this.bySandbox.set(session.sandboxId, sessions);
    }
    sessions.set(session.pid, session);
    void session.outcome.then(() => {
      sessions.delete(session.pid);
      if (sessions.size === 0 && this.bySandbox.get(session.sandboxId) === sessions) this.bySandbox.delete(session.sandboxId);
    });
  }

  /** The sandbox's running sessions, oldest first. */
  list(sandboxId: string): CommandSession[] {
    return [...(this.bySandbox.get(sandboxId)?.values() ?? [])];
  }

  /** The running session a selector names (by tag: the oldest with that tag). */
  find(sandboxId: string, selector: ProcessSelector): CommandSession | undefined {
    if (selector.case === 'pid') return this.bySandbox.get(sandboxId)?.get(selector.value);
    return this.list(sandboxId).find((s) => s.tag === selector.value);
  }

  /** Every running session of every sandbox. */
  all(): CommandSession[] {
    return [...this.bySandbox.values()].flatMap((m) => [...m.values()]);
  }
}

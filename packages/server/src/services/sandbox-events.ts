import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { SandboxEventActor, SandboxEventRecord, SandboxEventType } from '../records/event-records.js';
import { isTerminal, type SandboxRecord, type SandboxStatus } from '../records/sandbox-records.js';
import type { Store } from '../store/store.js';
import type { CorralMetrics } from './corral-metrics.js';

/** Commands and messages in events are cut to this many bytes (UTF-8). */
export const EVENT_TEXT_MAX_BYTES = 1024;
/** Events buffered before new ones are dropped (and counted in `corral_events_dropped_total`). */
const DEFAULT_MAX_BUFFERED = 10_000;
/** How long an event may wait in the buffer before a write. */
const FLUSH_DELAY_MS = 50;
/** Sandboxes whose last seen status is remembered (oldest forgotten first). */
const STATUS_MEMORY = 20_000;

/** `text` cut to at most `maxBytes` of UTF-8 (never inside a character), with `…` when cut. */
export function truncateText(text: string, maxBytes = EVENT_TEXT_MAX_BYTES): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let cut = Buffer.from(text).subarray(0, maxBytes - 3).toString('utf8');
  // A character split at the cut decodes as U+FFFD: drop it.
  if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/** `text` with every occurrence of each secret (of 4 characters or more) replaced by `***`. */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('***');
  return out;
}

/** The values an event about this sandbox must never show: its secrets' and environment variables' values. */
function secretValuesOf(sandbox: SandboxRecord): string[] {
  return [...Object.values(sandbox.secrets ?? {}), ...Object.values(sandbox.environmentVars ?? {})];
}

/** A first sight of a sandbox (nothing remembered, e.g. after a restart) counts as a change only if its status began this recently. */
const FIRST_SIGHT_MS = 60_000;

/**
 * Whether a row seen for the first time entered its status just now (its status's own timestamp
 * is recent), rather than being rewritten in a status it had long held (a PATCH of a running
 * sandbox, the removal of an ended sandbox's container after a restart).
 */
function enteredRecently(row: SandboxRecord, now = Date.now()): boolean {
  if (row.status === 'PROVISIONING') return true;
  const at = isTerminal(row.status) ? row.terminatedAt : row.status === 'PENDING' ? row.createdAt : row.status === 'RUNNING' ? row.startedAt : row.pausedAt;
  return at !== null && now - Date.parse(at) <= FIRST_SIGHT_MS;
}

/** Why a sandbox moved from `from` to its status now, as the event's `reason`. */
function reasonOf(from: SandboxStatus | null, row: SandboxRecord): string {
  switch (row.status) {
    case 'PENDING':
      return from === null ? 'created' : 'requeued';
    case 'PROVISIONING':
      return 'admitted';
    case 'RUNNING':
      return from === 'PAUSED' ? 'resumed' : 'started';
    case 'PAUSED':
      return 'paused';
    default:
      return row.terminationReason ?? row.errorType?.toLowerCase() ?? row.status.toLowerCase();
  }
}

/**
 * Sandbox events (`GET /api/v1/sandbox/{id}/events`): what services and the gateway record,
 * written to the store in batches in the background so recording never waits for, or fails
 * with, the store: `record` only buffers. A full buffer drops new events, and a failed write
 * drops its batch; both are counted (`corral_events_dropped_total`) and logged.
 *
 * Status changes are recorded from the store's update notifications (every write this process
 * commits), so no writer of a status can forget one; creates, execs, transfers, exposures, SSH
 * sessions and policy changes are recorded by the code that does them.
 *
 * Followers (`follow`) are woken when a batch with their sandbox's events has been written; they
 * also poll, for events other replicas write.
 */
export class SandboxEvents {
  private buffer: SandboxEventRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  /** Events taken from the buffer whose write has not finished (they count against the bound too). */
  private inFlight = 0;
  private lastMs = 0;
  private seq = 0;
  private readonly lastStatus = new Map<string, SandboxStatus>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly writtenListeners = new Set<(events: readonly SandboxEventRecord[]) => void>();
  private readonly unsubscribe: () => void;
  private readonly maxBuffered: number;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly metrics?: CorralMetrics,
    options: { /** Events buffered at most (default 10 000). */ maxBuffered?: number } = {},
  ) {
    this.maxBuffered = options.maxBuffered ?? DEFAULT_MAX_BUFFERED;
    this.unsubscribe = store.onSandboxUpdated((row) => this.noteStatus(row));
    if (metrics) metrics.sources.eventBacklog = () => this.buffer.length + this.inFlight;
  }

  /** A new event id: time first, then this process's sequence, then random, so ids sort in recording order. */
  private nextId(): string {
    const now = Date.now();
    if (now > this.lastMs) {
      this.lastMs = now;
      this.seq = 0;
    } else {
      this.seq += 1;
    }
    return `${this.lastMs.toString(36).padStart(9, '0')}${this.seq.toString(36).padStart(4, '0')}${randomBytes(3).toString('hex')}`;
  }

  /**
   * Buffers an event for the store; never throws and never waits. `data` must hold no secret and no
   * file content: callers pass commands through {@link truncateText}, and paths and sizes only.
   */
  record(sandboxId: string, type: SandboxEventType, data: Record<string, unknown>, actor: SandboxEventActor | null = null): void {
    if (this.closed) return;
    if (this.buffer.length + this.inFlight >= this.maxBuffered) {
      this.metrics?.eventsDropped.inc({ reason: 'buffer_full' });
      return;
    }
    this.buffer.push({ id: this.nextId(), sandboxId, at: new Date().toISOString(), type, actor, data });
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_DELAY_MS);
  }

  /** A stored create: `sandbox.created` with what it asked for (no env values, no secrets). */
  recordCreated(sandbox: SandboxRecord, actor: SandboxEventActor): void {
    this.lastStatus.set(sandbox.id, sandbox.status);
    this.record(
      sandbox.id,
      'sandbox.created',
      {
        status: sandbox.status,
        image: sandbox.dockerImage,
        cpuCores: sandbox.cpuCores,
        memoryGb: sandbox.memoryGb,
        diskSizeGb: sandbox.diskSizeGb,
        gpuCount: sandbox.gpuCount,
        labels: sandbox.labels,
        networkAccess: sandbox.networkAccess,
        timeoutMinutes: sandbox.timeoutMinutes,
        environmentVarNames: Object.keys(sandbox.environmentVars ?? {}),
        secretNames: Object.keys(sandbox.secrets ?? {}),
      },
      actor,
    );
  }

  /**
   * Records a status change seen in a committed write. A sandbox this process has no memory of
   * counts as changed when its status began within the last minute.
   */
  private noteStatus(row: SandboxRecord): void {
    const from = this.lastStatus.get(row.id) ?? null;
    if (from === row.status) return;
    if (from === null && !enteredRecently(row)) {
      this.remember(row);
      return;
    }
    this.remember(row);
    const data: Record<string, unknown> = { from, to: row.status, reason: reasonOf(from, row) };
    if (row.errorType) data.errorType = row.errorType;
    if (row.errorMessage && isTerminal(row.status)) data.errorMessage = truncateText(maskSecrets(row.errorMessage, secretValuesOf(row)));
    if (row.exitCode !== null && isTerminal(row.status)) data.exitCode = row.exitCode;
    this.record(row.id, 'sandbox.status', data);
  }

  /** Remembers a sandbox's status (most recent last; the oldest is forgotten past {@link STATUS_MEMORY}). */
  private remember(row: SandboxRecord): void {
    this.lastStatus.delete(row.id);
    this.lastStatus.set(row.id, row.status);
    if (this.lastStatus.size > STATUS_MEMORY) {
      const oldest = this.lastStatus.keys().next().value;
      if (oldest !== undefined) this.lastStatus.delete(oldest);
    }
  }

  /** Writes what is buffered now (after any write in progress); resolves once it is stored or dropped. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.buffer;
    this.buffer = [];
    this.inFlight += batch.length;
    this.writing = this.writing.then(async () => {
      if (batch.length === 0) return;
      try {
        await this.store.insertSandboxEvents(batch);
        this.metrics?.eventsWritten.inc(batch.length);
        for (const listener of this.writtenListeners) {
          try {
            listener(batch);
          } catch (error) {
            this.log.warn({ err: error }, 'a sandbox event listener failed');
          }
        }
      } catch (error) {
        this.metrics?.eventsDropped.inc({ reason: 'write_failed' }, batch.length);
        this.log.warn({ err: error, events: batch.length }, 'could not store sandbox events; they are dropped');
      } finally {
        this.inFlight -= batch.length;
      }
      for (const id of new Set(batch.map((e) => e.sandboxId))) this.wake(id);
    });
    return this.writing;
  }

  /**
   * Calls `listener` with each batch of events this process has stored, in id order, after the
   * write (what webhook delivery builds on). It must not block: it runs on the writer's path.
   * Returns the function that stops the calls.
   */
  onWritten(listener: (events: readonly SandboxEventRecord[]) => void): () => void {
    this.writtenListeners.add(listener);
    return () => this.writtenListeners.delete(listener);
  }

  /** A page of a sandbox's events after `after` (after writing what this process buffered). */
  async list(sandboxId: string, after: string | null, limit: number): Promise<SandboxEventRecord[]> {
    await this.flush();
    return this.store.listSandboxEvents(sandboxId, after, limit);
  }

  /**
   * A sandbox's events after `after`, then new ones as they are written, until the sandbox has
   * ended (or is gone) and its last events were given, or `signal` aborts.
   */
  async *follow(sandboxId: string, after: string | null, signal: AbortSignal, pollMs = 1_000): AsyncGenerator<SandboxEventRecord> {
    let cursor = after;
    for (;;) {
      if (signal.aborted) return;
      const row = await this.store.getSandbox(sandboxId);
      const ended = !row || isTerminal(row.status);
      // Read after the status: an event of the end is written before (or with) the end is seen.
      for (;;) {
        const page = await this.list(sandboxId, cursor, 500);
        for (const event of page) {
          cursor = event.id;
          yield event;
        }
        if (page.length < 500) break;
      }
      if (ended) return;
      await this.waitFor(sandboxId, pollMs, signal);
    }
  }

  /** Resolves when events of the sandbox were written by this process, after `timeoutMs`, or on abort. */
  private waitFor(sandboxId: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(sandboxId);
      if (!set) {
        set = new Set();
        this.waiters.set(sandboxId, set);
      }
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        const current = this.waiters.get(sandboxId);
        current?.delete(done);
        if (current?.size === 0) this.waiters.delete(sandboxId);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  private wake(sandboxId: string): void {
    for (const done of [...(this.waiters.get(sandboxId) ?? [])]) done();
  }

  /** Stops listening, writes what is buffered, and records nothing more. */
  async close(): Promise<void> {
    this.unsubscribe();
    await this.flush();
    this.closed = true;
    for (const id of [...this.waiters.keys()]) this.wake(id);
  }
}

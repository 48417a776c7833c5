import type { Logger } from 'pino';
import type { CorralConfig } from '../config.js';
import { ApiError } from '../errors/api-error.js';
import type { SandboxCapacity, SandboxRuntime } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import { isTerminal, type SandboxRecord } from '../records/sandbox-records.js';
import { nowIso } from '../util/time.js';

const GiB = 1024 ** 3;
/** While creates wait for capacity, the reservations are re-read from the store this often (rows another replica ended). */
const RESYNC_MS = 30_000;
/** What a full queue tells clients to wait before they try again, seconds. */
const QUEUE_FULL_RETRY_AFTER_SECONDS = 10;

/** What a sandbox reserves of the host while it is admitted. */
interface Reservation {
  cpuCores: number;
  memoryGb: number;
}

/** One create waiting for admission; `cpuCores` and `memoryGb` are what it reserves ({@link AdmissionQueue.reservationOf}). */
interface Entry {
  id: string;
  userId: string;
  cpuCores: number;
  memoryGb: number;
  /** Ends it in ERROR (`ADMISSION_TIMEOUT`) while it still waits. */
  timer: NodeJS.Timeout | null;
}

/** The limits reservations are admitted against: capacity × overcommit. */
interface Limits {
  cpuCores: number;
  memoryGb: number;
}

/**
 * The admission queue of this instance's creates. A create starts provisioning (`start`) once
 * both hold:
 * - fewer than `maxConcurrentProvisioning` sandboxes are provisioning;
 * - its `cpu_cores` and `memory_gb`, added to what the active sandboxes of this instance reserve
 *   (PROVISIONING, RUNNING, PAUSED, and admitted creates), stay within the driver's capacity
 *   (`SandboxRuntime.capacity()`) times `CORRAL_OVERCOMMIT_CPU` / `CORRAL_OVERCOMMIT_MEMORY`.
 *   A driver that reports no capacity is not checked.
 *
 * Waiting creates stay PENDING and are served round-robin across users, first in first out
 * within a user. The create whose turn it is blocks the ones behind it when it does not fit (no
 * backfill), so a large create is never starved by small ones. The reservations are read from the
 * store before anything is admitted and kept up from the store's update notifications, so they
 * are right after a restart (and re-read every 30 s while creates wait for capacity, for rows
 * another replica ended). A create with a deadline that is still waiting then ends in ERROR
 * (`ADMISSION_TIMEOUT`).
 */
export class AdmissionQueue {
  /** Waiting creates per user; the map's order is the round-robin order (the user served last moves to the end). */
  private readonly queues = new Map<string, Entry[]>();
  private readonly entries = new Map<string, Entry>();
  /** What admitted, still active sandboxes of this instance reserve. */
  private readonly reserved = new Map<string, Reservation>();
  /** Sandboxes admitted and provisioning now (a slot each). */
  private readonly admitted = new Set<string>();
  /** Re-reads the reservations while creates wait for capacity. */
  private resyncTimer: NodeJS.Timeout | null = null;
  /** While a re-read of the reservations runs: what was admitted and what ended meanwhile. */
  private reading: { admitted: Set<string>; ended: Set<string> } | null = null;
  /** Creates that passed the queue-size check and are not enqueued yet, per user. */
  private readonly claims = new Map<string, number>();
  private claimsTotal = 0;
  /** Capacity × overcommit once read; null: not checked (no capacity reported). */
  private limits: Limits | null = null;
  private loading: Promise<void> | null = null;
  private loaded = false;
  /** Set while the create whose turn it is does not fit: creates behind it wait for capacity, not for a slot. */
  private capacityBlocked = false;
  private readonly unsubscribe: () => void;
  /** Rows that ended while the reservations were being read (so the read does not count them). */
  private endedWhileLoading = new Set<string>();
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly runtime: SandboxRuntime,
    private readonly config: CorralConfig,
    private readonly log: Logger,
    /** Starts provisioning an admitted create; call `finished` when it is over. */
    private readonly start: (sandboxId: string) => void,
    /** How often the reservations are re-read while creates wait for capacity. */
    private readonly resyncMs = RESYNC_MS,
  ) {
    this.unsubscribe = store.onSandboxUpdated((row) => this.onUpdated(row));
  }

  /** Creates waiting now. */
  get queued(): number {
    return this.entries.size;
  }

  /** Whether the sandbox waits in the queue. */
  has(id: string): boolean {
    return this.entries.has(id);
  }

  /**
   * Whether a waiting create waits only for a provisioning slot (a short throughput queue a held
   * create is worth holding for), not for capacity.
   */
  waitsOnlyForSlot(id: string): boolean {
    const entry = this.entries.get(id);
    if (!entry || !this.loaded || this.capacityBlocked) return false;
    return this.reserved.has(id) || this.fits(entry);
  }

  /** Reads the capacity and the reservations of this instance's active rows, once; later calls wait for the same read. */
  load(): Promise<void> {
    this.loading ??= this.read().then(
      () => {
        this.loaded = true;
        this.endedWhileLoading.clear();
        this.dispatch();
      },
      (error: unknown) => {
        this.loading = null;
        this.log.error({ err: error }, 'admission: could not read capacity and reservations; retrying in 1 s');
        if (!this.closed) setTimeout(() => void this.load(), 1_000).unref();
      },
    );
    return this.loading;
  }

  private async read(): Promise<void> {
    const capacity: SandboxCapacity | undefined = this.runtime.capacity ? await this.runtime.capacity() : undefined;
    this.limits = capacity
      ? { cpuCores: capacity.cpuCores * this.config.overcommitCpu, memoryGb: (capacity.memoryBytes / GiB) * this.config.overcommitMemory }
      : null;
    const rows = await this.store.findSandboxes({ activeOnly: true, runtimeOwner: this.config.instanceId }, 1_000_000);
    for (const row of rows) {
      if (row.status !== 'PENDING' && !this.endedWhileLoading.has(row.id)) this.reserved.set(row.id, this.reservationOf(row));
    }
  }

  /**
   * The limits creates are admitted against (capacity × overcommit), or null when the driver
   * reports no capacity.
   */
  async admissionLimits(): Promise<Limits | null> {
    await this.load();
    return this.limits;
  }

  /**
   * What a sandbox reserves against capacity × overcommit: its limits, or for a `guaranteed`
   * sandbox (Prime: "requests equal to its limits, bypassing the default oversubscription
   * multiplier") its limits times the overcommit ratios, so it takes its whole size out of the
   * host's capacity.
   */
  reservationOf(row: Pick<SandboxRecord, 'cpuCores' | 'memoryGb' | 'guaranteed'>): Reservation {
    if (!row.guaranteed) return { cpuCores: row.cpuCores, memoryGb: row.memoryGb };
    return { cpuCores: row.cpuCores * this.config.overcommitCpu, memoryGb: row.memoryGb * this.config.overcommitMemory };
  }

  /**
   * Refuses (422 `UNSUPPORTED_RESOURCE` on the field) a create that could never be admitted: it
   * reserves more than the whole capacity × overcommit.
   */
  async checkEverFits(sandbox: Pick<SandboxRecord, 'cpuCores' | 'memoryGb' | 'guaranteed'>): Promise<void> {
    const limits = await this.admissionLimits();
    if (!limits) return;
    const { cpuCores, memoryGb } = this.reservationOf(sandbox);
    const how = sandbox.guaranteed ? ' as a guaranteed sandbox (its whole size out of the capacity)' : '';
    if (cpuCores > limits.cpuCores) {
      const details = `asks ${sandbox.cpuCores} CPU cores${how}; this host admits at most ${fmt(limits.cpuCores)} (its capacity × CORRAL_OVERCOMMIT_CPU)`;
      throw new ApiError('UNSUPPORTED_RESOURCE', `cpu_cores: ${details}`, { fieldErrors: [{ param: 'cpu_cores', details }] });
    }
    if (memoryGb > limits.memoryGb) {
      const details = `asks ${sandbox.memoryGb} GB of memory${how}; this host admits at most ${fmt(limits.memoryGb)} GB (its capacity × CORRAL_OVERCOMMIT_MEMORY)`;
      throw new ApiError('UNSUPPORTED_RESOURCE', `memory_gb: ${details}`, { fieldErrors: [{ param: 'memory_gb', details }] });
    }
  }

  /**
   * Takes a place in the queue for a create about to be stored, or throws 429
   * `ADMISSION_QUEUE_FULL` (with `Retry-After`) when the queue is full server-wide or for the
   * user. Call the returned function once the create was enqueued or did not happen.
   */
  claim(userId: string): () => void {
    const mine = (this.claims.get(userId) ?? 0) + this.queuedOf(userId);
    if (this.entries.size + this.claimsTotal >= this.config.admissionQueueMax) {
      throw new ApiError('ADMISSION_QUEUE_FULL', `The admission queue is full: ${this.config.admissionQueueMax} creates wait for capacity (CORRAL_ADMISSION_QUEUE_MAX); retry later`, {
        retryAfterSeconds: QUEUE_FULL_RETRY_AFTER_SECONDS,
      });
    }
    if (mine >= this.config.admissionQueueMaxPerUser) {
      throw new ApiError('ADMISSION_QUEUE_FULL', `You have ${mine} creates waiting for capacity, the most one user may (CORRAL_ADMISSION_QUEUE_MAX_PER_USER); retry later`, {
        retryAfterSeconds: QUEUE_FULL_RETRY_AFTER_SECONDS,
      });
    }
    this.claims.set(userId, (this.claims.get(userId) ?? 0) + 1);
    this.claimsTotal++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.claimsTotal--;
      const left = (this.claims.get(userId) ?? 1) - 1;
      if (left > 0) this.claims.set(userId, left);
      else this.claims.delete(userId);
    };
  }

  private queuedOf(userId: string): number {
    return this.queues.get(userId)?.length ?? 0;
  }

  /**
   * Puts a PENDING create at the end of its user's queue (no-op when it already waits) and admits
   * what fits. Its deadline (`admissionDeadline`) starts counting now; one already past ends it at once.
   */
  enqueue(row: SandboxRecord): void {
    if (this.entries.has(row.id)) return;
    const entry: Entry = { id: row.id, userId: row.userId, ...this.reservationOf(row), timer: null };
    if (row.admissionDeadline !== null) {
      const delay = Math.max(0, Date.parse(row.admissionDeadline) - Date.now());
      entry.timer = setTimeout(() => void this.expire(entry.id), Math.min(delay, 2 ** 31 - 1));
      entry.timer.unref();
    }
    this.entries.set(row.id, entry);
    const queue = this.queues.get(row.userId);
    if (queue) queue.push(entry);
    else this.queues.set(row.userId, [entry]);
    if (this.loaded) this.dispatch();
    else void this.load();
  }

  /** A provisioning admitted by this queue is over (RUNNING, ERROR or deleted): its slot frees. */
  finished(id: string): void {
    this.admitted.delete(id);
    this.dispatch();
  }

  /**
   * Reads the reservations again from the store: this instance's PROVISIONING/RUNNING/PAUSED rows,
   * plus what is being provisioned. Catches rows that ended without this process's notification
   * (a delete through another replica sharing the store).
   */
  private async resync(): Promise<void> {
    this.resyncTimer = null;
    if (this.closed) return;
    // What changes while the rows are read is applied on top: admitted since (kept), ended since (dropped).
    this.reading = { admitted: new Set(), ended: new Set() };
    try {
      const rows = await this.store.findSandboxes({ activeOnly: true, runtimeOwner: this.config.instanceId }, 1_000_000);
      const next = new Map<string, Reservation>();
      for (const row of rows) if (row.status !== 'PENDING') next.set(row.id, this.reservationOf(row));
      for (const id of [...this.admitted, ...this.reading.admitted]) {
        const mine = this.reserved.get(id);
        if (mine) next.set(id, mine);
      }
      for (const id of this.reading.ended) next.delete(id);
      this.reserved.clear();
      for (const [id, reservation] of next) this.reserved.set(id, reservation);
    } catch (error) {
      this.log.warn({ err: error }, 'admission: could not re-read reservations');
    } finally {
      this.reading = null;
    }
    this.dispatch();
  }

  /** Forgets an admitted sandbox's reservation (it ended before it started), and admits what now fits. */
  release(id: string): void {
    if (this.reserved.delete(id)) this.dispatch();
  }

  /**
   * Why a waiting create waits, for `errorMessage` while it is PENDING: "waiting for capacity: 3.0
   * of 8.0 CPU free, needs 4.0; 5th in queue". Undefined when it does not wait here.
   */
  reasonOf(id: string): string | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    const place = `${ordinal(this.positionOf(entry))} in queue`;
    if (!this.loaded) return `waiting for admission (reading the host's capacity); ${place}`;
    if (this.limits && !this.reserved.has(id)) {
      const used = this.used();
      const cpuFree = Math.max(0, this.limits.cpuCores - used.cpuCores);
      const memFree = Math.max(0, this.limits.memoryGb - used.memoryGb);
      if (entry.cpuCores > cpuFree) return `waiting for capacity: ${fmt(cpuFree)} of ${fmt(this.limits.cpuCores)} CPU free, needs ${fmt(entry.cpuCores)}; ${place}`;
      if (entry.memoryGb > memFree) return `waiting for capacity: ${fmt(memFree)} of ${fmt(this.limits.memoryGb)} GB memory free, needs ${fmt(entry.memoryGb)}; ${place}`;
      if (this.capacityBlocked) return `waiting for capacity behind earlier creates; ${place}`;
    }
    return `waiting for a provisioning slot (${this.config.maxConcurrentProvisioning} provision at once); ${place}`;
  }

  /** Where the create stands in the order the queue serves (1: next): round-robin over users, FIFO within one. */
  private positionOf(entry: Entry): number {
    const index = (this.queues.get(entry.userId) ?? []).indexOf(entry);
    // Rounds 0..index-1 of every user come first, then round `index` of the users ahead in the rotation.
    let ahead = 0;
    let beforeMe = true;
    for (const [userId, queue] of this.queues) {
      if (userId === entry.userId) beforeMe = false;
      ahead += Math.min(queue.length, index) + (beforeMe && queue.length > index ? 1 : 0);
    }
    return ahead + 1;
  }

  private used(): Reservation {
    let cpuCores = 0;
    let memoryGb = 0;
    for (const r of this.reserved.values()) {
      cpuCores += r.cpuCores;
      memoryGb += r.memoryGb;
    }
    return { cpuCores, memoryGb };
  }

  private fits(entry: Entry): boolean {
    if (!this.limits) return true;
    const used = this.used();
    // A little slack for floating point sums (0.1 + 0.2).
    return used.cpuCores + entry.cpuCores <= this.limits.cpuCores + 1e-9 && used.memoryGb + entry.memoryGb <= this.limits.memoryGb + 1e-9;
  }

  /** Admits waiting creates, in turn, while a slot is free and the next one fits. */
  private dispatch(): void {
    if (!this.loaded || this.closed) return;
    this.capacityBlocked = false;
    while (this.admitted.size < this.config.maxConcurrentProvisioning) {
      const next = this.queues.entries().next();
      if (next.done) break;
      const [userId, queue] = next.value;
      const entry = queue[0];
      if (!entry) {
        this.queues.delete(userId);
        continue;
      }
      if (!this.reserved.has(entry.id) && !this.fits(entry)) {
        this.capacityBlocked = true;
        break;
      }
      queue.shift();
      this.queues.delete(userId);
      if (queue.length > 0) this.queues.set(userId, queue);
      this.entries.delete(entry.id);
      if (entry.timer) clearTimeout(entry.timer);
      this.reserved.set(entry.id, { cpuCores: entry.cpuCores, memoryGb: entry.memoryGb });
      this.admitted.add(entry.id);
      this.reading?.admitted.add(entry.id);
      this.start(entry.id);
    }
    if (this.capacityBlocked && !this.resyncTimer) {
      this.resyncTimer = setTimeout(() => void this.resync(), this.resyncMs);
      this.resyncTimer.unref();
    }
  }

  /** Takes a create out of the queue (deleted, ended, expired). */
  private drop(id: string): Entry | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    this.entries.delete(id);
    if (entry.timer) clearTimeout(entry.timer);
    const queue = this.queues.get(entry.userId);
    if (queue) {
      queue.splice(queue.indexOf(entry), 1);
      if (queue.length === 0) this.queues.delete(entry.userId);
    }
    return entry;
  }

  private async expire(id: string): Promise<void> {
    if (!this.drop(id)) return;
    this.dispatch();
    try {
      const ended = await this.store.updateSandbox(
        id,
        {
          status: 'ERROR',
          errorType: 'ADMISSION_TIMEOUT',
          errorMessage: 'The create waited for capacity past its admission_timeout_seconds and was not started',
          terminationReason: 'admission_timeout',
          terminatedAt: nowIso(),
        },
        ['PENDING'],
      );
      if (ended) this.log.info({ sandboxId: id }, 'admission deadline passed');
    } catch (error) {
      this.log.error({ err: error, sandboxId: id }, 'admission: could not end a create past its deadline');
    }
  }

  /** Keeps the reservations in step with the store: a sandbox that ended frees its share; one that runs without admission (adopted) takes one. */
  private onUpdated(row: SandboxRecord): void {
    if (isTerminal(row.status)) {
      if (!this.loaded) this.endedWhileLoading.add(row.id);
      this.reading?.ended.add(row.id);
      const dropped = this.drop(row.id) !== undefined;
      if (this.reserved.delete(row.id) || dropped) this.dispatch();
    } else if (row.status !== 'PENDING' && row.runtimeOwner === this.config.instanceId && !this.reserved.has(row.id) && this.loaded) {
      this.reserved.set(row.id, this.reservationOf(row));
    }
  }

  /** Stops admitting, the deadline timers and the store subscription. */
  close(): void {
    this.closed = true;
    this.unsubscribe();
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    for (const entry of this.entries.values()) if (entry.timer) clearTimeout(entry.timer);
  }
}

function fmt(value: number): string {
  return value.toFixed(1);
}

function ordinal(n: number): string {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  const suffix = teen ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[n % 10] ?? 'th';
  return `${n}${suffix}`;
}

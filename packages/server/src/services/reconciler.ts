import type { Logger } from 'pino';
import type { RuntimeSandboxState } from '../runtime/runtime.js';
import type { CheckpointService } from './checkpoint-service.js';
import type { CorralMetrics } from './corral-metrics.js';
import type { ReplicaPresence } from './replica-presence.js';
import type { SandboxLifecycle } from './sandbox-lifecycle.js';
import { ACTIVE_STATUSES, TERMINAL_STATUSES, isTerminal, type SandboxRecord } from '../records/sandbox-records.js';
import type { Store } from '../store/store.js';
import { toMillis } from '../util/time.js';

/** How long an ended sandbox's container is kept (for its logs) before the reconciler removes it. */
const ENDED_CONTAINER_GRACE_MS = 10 * 60_000;
/** Rows changed this long before the previous changed-rows query are read again (clock skew between replicas, slow commits). */
const CHANGE_OVERLAP_MS = 5_000;
/** How long a pass waits before listing again when a RUNNING sandbox's container is missing. */
const LOST_CONFIRM_MS = 500;
/** A failed container removal is retried after 1 s, then twice as long after each failure, up to 5 minutes. */
const REMOVE_RETRY_BASE_MS = 1_000;
const REMOVE_RETRY_MAX_MS = 5 * 60_000;

/** What one pass changed, for logs and tests. */
export interface ReconcileReport {
  timedOut: string[];
  idled: string[];
  lost: string[];
  exited: string[];
  adopted: string[];
  provisioned: string[];
  orphansRemoved: string[];
  /** Sandboxes whose container could not be removed this pass; retried with backoff. */
  removeFailed: string[];
  /** Ended rows deleted because they passed the retention period. */
  purged: number;
  /** Checkpoint rows the sweep failed (a capture cut by a restart) or deleted. */
  checkpointsSwept: number;
  /** Running sandboxes whose egress policy was (re-)applied to the runtime this pass. */
  egressApplied: string[];
  /** Running sandboxes whose egress policy could not be applied; retried with backoff. */
  egressFailed: string[];
  /** PAUSED sandboxes the driver reported running unfrozen, frozen again. */
  repaused: string[];
}

/** Tuning of {@link Reconciler}. */
export interface ReconcilerOptions {
  /** How long ended sandboxes stay readable; older rows are purged (default 168 h). */
  retentionMs?: number;
  /** How often the whole set of this instance's active rows is re-read (default 60 s); between, only changed and due rows are. */
  fullResyncMs?: number;
  /** Sandboxes worked on at once within a pass (default 16). */
  concurrency?: number;
  /**
   * This replica among the deployment's (heartbeats and the leader lease): a pass runs only while
   * this replica holds the leader lease, and leaves starting sandboxes that another live replica
   * provisions alone. Absent: this process is the deployment's only reconciler.
   */
  presence?: Pick<ReplicaPresence, 'tryLead' | 'liveReplicas'>;
  /** Where pass durations are recorded (`corral_reconcile_pass_duration_seconds`). */
  metrics?: CorralMetrics;
  /** Checkpoints to sweep each pass (captures cut by a restart, DELETING rows, expired ones); none when absent. */
  checkpoints?: Pick<CheckpointService, 'sweep'>;
}

/**
 * Owns the lifecycle over time. Each pass reads the store and the runtime and makes them agree:
 * - RUNNING past `startedAt + timeoutMinutes + pausedMs` → TIMEOUT; past its idle timeout → TIMEOUT
 *   (`idle_timeout`); a PAUSED sandbox never times out (its clocks stop while paused);
 * - a PAUSED sandbox the driver reports unfrozen → paused again (it stays PAUSED, and is never
 *   taken for dead while its container runs);
 * - a live row whose container exited → TERMINATED with its exit code, or ERROR/OOM_KILLED;
 * - a live row whose container vanished (missing from two listings 0.5 s apart) → ERROR/RUNTIME_LOST;
 * - PENDING rows, and PROVISIONING rows nobody is provisioning (a restart) → into the admission
 *   queue in creation order, or
 *   adopted when their container is already running;
 * - containers with no live row → removed (ended rows keep theirs for a grace period, for logs);
 *   a removal that fails is retried on later passes, with backoff, until the container is gone;
 * - ended rows older than the retention period → deleted;
 * - checkpoints (`CheckpointService.sweep`): a capture no live process runs → FAILED, DELETING
 *   rows → deleted again, checkpoints past their retention → deleted;
 * - a RUNNING sandbox whose egress policy generation is not applied yet, or whose policy this
 *   process's runtime was never given (after a restart) → applied (`EgressApplier`), with backoff.
 *
 * The pass works from an in-memory view of this instance's active rows: the whole set is read at
 * the first pass and every `fullResyncMs`; the passes between read only the rows written since the
 * previous pass, plus the rows whose timeout or idle deadline looks due in the view (re-read, since
 * activity touches do not mark rows as written). Sandboxes are worked on `concurrency` at a time.
 * Everything it decides comes from the store plus the runtime, so a restart loses nothing.
 */
export class Reconciler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<ReconcileReport> | null = null;
  private readonly retentionMs: number;
  private readonly fullResyncMs: number;
  private readonly concurrency: number;
  private readonly presence: Pick<ReplicaPresence, 'tryLead' | 'liveReplicas'> | undefined;
  private readonly metrics: CorralMetrics | undefined;
  private readonly checkpoints: Pick<CheckpointService, 'sweep'> | undefined;
  /** This instance's active rows as of the last pass. */
  private readonly view = new Map<string, SandboxRecord>();
  /** Wall-clock time of the last full read; undefined before the first. */
  private resyncedAt: number | undefined;
  /** Wall-clock time the last changed-rows (or full) query started. */
  private readFrom = 0;
  /** Containers whose removal failed: how often, and when the next attempt is due. */
  private readonly removeRetries = new Map<string, { attempts: number; retryAt: number }>();

  constructor(
    private readonly store: Store,
    private readonly lifecycle: SandboxLifecycle,
    private readonly intervalMs: number,
    private readonly log: Logger,
    options: ReconcilerOptions | number = {},
  ) {
    const resolved = typeof options === 'number' ? { retentionMs: options } : options;
    this.retentionMs = resolved.retentionMs ?? 168 * 3_600_000;
    this.fullResyncMs = resolved.fullResyncMs ?? 60_000;
    this.concurrency = Math.max(1, resolved.concurrency ?? 16);
    this.presence = resolved.presence;
    this.metrics = resolved.metrics;
    this.checkpoints = resolved.checkpoints;
  }

  /** Runs one pass now (or joins the pass in progress). */
  reconcile(now = Date.now()): Promise<ReconcileReport> {
    if (!this.running) {
      const started = performance.now();
      this.running = this.pass(now).finally(() => {
        this.metrics?.reconcileSeconds.observe((performance.now() - started) / 1000);
        this.running = null;
      });
    }
    return this.running;
  }

  /** Starts periodic passes. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.reconcile().catch((error: unknown) => this.log.error({ err: error }, 'reconcile pass failed'));
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Stops periodic passes and waits for the current one. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** Brings the view of this instance's active rows up to date and returns it. */
  private async refreshView(now: number): Promise<SandboxRecord[]> {
    // Only this instance's sandboxes: other replicas sharing the store reconcile their own.
    const owner = this.lifecycle.instanceId;
    const queryStart = Date.now();
    if (this.resyncedAt === undefined || queryStart - this.resyncedAt >= this.fullResyncMs) {
      const rows = await this.store.findSandboxes({ activeOnly: true, runtimeOwner: owner }, 1_000_000);
      this.view.clear();
      for (const row of rows) this.view.set(row.id, row);
      this.resyncedAt = queryStart;
    } else {
      const since = new Date(this.readFrom - CHANGE_OVERLAP_MS).toISOString();
      this.apply(await this.store.findSandboxes({ runtimeOwner: owner, updatedSince: since }, 1_000_000));
    }
    this.readFrom = queryStart;
    // Activity touches do not mark a row written: re-read the rows whose deadline looks due.
    const due = [...this.view.values()].filter((row) => row.status === 'RUNNING' && deadlineOf(row, now) <= now);
    if (due.length > 0) {
      const fresh = await this.store.getSandboxes(due.map((row) => row.id));
      const found = new Set(fresh.map((row) => row.id));
      for (const row of due) if (!found.has(row.id)) this.view.delete(row.id);
      this.apply(fresh);
    }
    return [...this.view.values()];
  }

  /** Puts rows read from the store into the view (ended ones leave it). */
  private apply(rows: SandboxRecord[]): void {
    for (const row of rows) {
      if (ACTIVE_STATUSES.includes(row.status) && row.runtimeOwner === this.lifecycle.instanceId) this.view.set(row.id, row);
      else this.view.delete(row.id);
    }
  }

  private async pass(now: number): Promise<ReconcileReport> {
    const report = emptyReport();
    if (this.presence && !(await this.presence.tryLead())) {
      // Another replica reconciles; when this one leads again it starts from a full read.
      this.resyncedAt = undefined;
      this.view.clear();
      return report;
    }
    const live = await this.refreshView(now);
    // Starting sandboxes another live replica provisions are left to it.
    const liveReplicas = this.presence ? await this.presence.liveReplicas() : new Set<string>();
    const runtime = this.lifecycle.runtime;
    const containers = new Map<string, RuntimeSandboxState>();
    if (runtime) {
      for (const state of await runtime.list()) containers.set(state.sandboxId, state);
      // A listing from a cache (the kubernetes driver's informer) may not show yet what another
      // replica just started: a RUNNING sandbox missing from it is looked for once more before it is lost.
      if (live.some((row) => (row.status === 'RUNNING' || row.status === 'PAUSED') && !containers.has(row.id))) {
        await new Promise((resolve) => setTimeout(resolve, LOST_CONFIRM_MS));
        for (const state of await runtime.list()) if (!containers.has(state.sandboxId)) containers.set(state.sandboxId, state);
      }
    }
    const toProvision: SandboxRecord[] = [];
    await forEachLimited(live, this.concurrency, (sandbox) => this.reconcileOne(sandbox, containers, now, report, toProvision, liveReplicas));
    // PENDING rows (after a restart: every one) enter the admission queue in their original order.
    toProvision.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    for (const sandbox of toProvision) {
      this.lifecycle.provision(sandbox);
      report.provisioned.push(sandbox.id);
    }
    if (runtime) await this.removeOrphans(containers, now, report);
    report.purged = await this.store.purgeEndedSandboxes(new Date(now - this.retentionMs).toISOString(), 1000);
    if (this.checkpoints) {
      try {
        report.checkpointsSwept = await this.checkpoints.sweep(now, this.presence ? liveReplicas : new Set());
      } catch (error) {
        this.log.warn({ err: error }, 'checkpoint sweep failed; the next pass retries');
      }
    }
    const changed =
      report.timedOut.length + report.idled.length + report.lost.length + report.exited.length + report.orphansRemoved.length + report.removeFailed.length + report.purged + report.checkpointsSwept +
      report.egressApplied.length + report.egressFailed.length + report.adopted.length + report.repaused.length;
    if (changed > 0) this.log.info(report, 'reconciled');
    return report;
  }

  /** Makes one active row and its container agree. */
  private async reconcileOne(
    sandbox: SandboxRecord,
    containers: Map<string, RuntimeSandboxState>,
    now: number,
    report: ReconcileReport,
    toProvision: SandboxRecord[],
    liveReplicas: ReadonlySet<string>,
  ): Promise<void> {
    const runtime = this.lifecycle.runtime;
    if (sandbox.status === 'RUNNING' || sandbox.status === 'PAUSED') {
      if (sandbox.status === 'RUNNING' && (await this.enforceTimeouts(sandbox, now, report))) {
        this.view.delete(sandbox.id);
        return;
      }
      if (!runtime) return;
      const container = containers.get(sandbox.id);
      if (!container) {
        await this.lifecycle.terminate(sandbox, {
          status: 'ERROR',
          errorType: 'RUNTIME_LOST',
          errorMessage: 'The sandbox container disappeared from the runtime',
          terminationReason: 'runtime_lost',
        });
        this.view.delete(sandbox.id);
        report.lost.push(sandbox.id);
      } else if (!container.running) {
        await this.lifecycle.recordExit(sandbox.id, container.exitCode ?? 0, container.oomKilled);
        this.view.delete(sandbox.id);
        report.exited.push(sandbox.id);
      } else if (sandbox.status === 'PAUSED' && container.paused === false && runtime.pause) {
        // Thawed behind the server's back (an engine restart): freeze it again, unless it was resumed meanwhile.
        const fresh = await this.store.getSandbox(sandbox.id);
        if (fresh?.status === 'PAUSED' && fresh.runtimeId === container.runtimeId) {
          await runtime.pause(container.runtimeId).then(
            () => report.repaused.push(sandbox.id),
            (error: unknown) => this.log.warn({ err: error, sandboxId: sandbox.id }, 'could not pause a PAUSED sandbox found running'),
          );
        }
      } else if (this.lifecycle.egress.needsApply(sandbox)) {
        try {
          await this.lifecycle.egress.apply(sandbox.id);
          report.egressApplied.push(sandbox.id);
        } catch {
          report.egressFailed.push(sandbox.id);
        }
      }
    } else if ((sandbox.status === 'PENDING' || sandbox.status === 'PROVISIONING') && runtime) {
      if (this.lifecycle.isTracked(sandbox.id)) return;
      // The view and the runtime listing are snapshots: provisioning may have started and finished
      // since. Act on the row as it is now, or a sandbox that just became RUNNING would lose the
      // container the listing caught between create and start.
      const fresh = await this.store.getSandbox(sandbox.id);
      if (!fresh || (fresh.status !== 'PENDING' && fresh.status !== 'PROVISIONING') || this.lifecycle.isTracked(sandbox.id)) {
        if (fresh && !isTerminal(fresh.status)) this.view.set(fresh.id, fresh);
        else this.view.delete(sandbox.id);
        return;
      }
      // Another live replica provisions it (its claim lasts while its heartbeat does).
      const me = this.lifecycle.replicaId;
      if (fresh.provisioner !== null && fresh.provisioner !== me && liveReplicas.has(fresh.provisioner)) {
        this.view.set(fresh.id, fresh);
        return;
      }
      // Nobody's, this replica's from before, or a lapsed replica's: claimed (compare-and-set), so
      // of replicas racing for it one acts; the provisioning writes that follow are fenced on the claim.
      const claimed = await this.lifecycle.claim(fresh.id);
      if (!claimed) {
        const now2 = await this.store.getSandbox(fresh.id);
        if (now2 && !isTerminal(now2.status)) this.view.set(now2.id, now2);
        else this.view.delete(fresh.id);
        return;
      }
      if (fresh.provisioner !== null && fresh.provisioner !== me) this.log.info({ sandboxId: fresh.id, from: fresh.provisioner, replicaId: me }, 'adopted the provisioning of a replica whose heartbeat lapsed');
      sandbox = claimed;
      const container = containers.get(sandbox.id);
      if (sandbox.status === 'PROVISIONING' && container?.running) {
        const adopted = await this.store.updateSandbox(
          sandbox.id,
          { status: 'RUNNING', runtimeId: container.runtimeId, startedAt: new Date(now).toISOString() },
          ['PROVISIONING'],
          me,
        );
        if (adopted) {
          this.view.set(adopted.id, adopted);
          report.adopted.push(sandbox.id);
        }
        return;
      }
      if (container) await this.lifecycle.removeQuietly(container.runtimeId);
      containers.delete(sandbox.id);
      const pending = sandbox.status === 'PENDING' ? sandbox : await this.store.updateSandbox(sandbox.id, { status: 'PENDING' }, ['PROVISIONING'], me);
      // Queued after the pass's workers, in creation order (the admission queue's order).
      if (pending) toProvision.push(pending);
    }
  }

  /** Ends a RUNNING sandbox past its lifetime or idle limit. True when it ended. */
  private async enforceTimeouts(sandbox: SandboxRecord, now: number, report: ReconcileReport): Promise<boolean> {
    const started = sandbox.startedAt ? toMillis(sandbox.startedAt) : now;
    if (sandbox.timeoutMinutes > 0 && now >= started + sandbox.timeoutMinutes * 60_000 + sandbox.pausedMs) {
      await this.lifecycle.terminate(sandbox, {
        status: 'TIMEOUT',
        errorType: 'TIMEOUT',
        errorMessage: `The sandbox reached its timeout of ${sandbox.timeoutMinutes} minute(s)`,
        terminationReason: 'timeout',
      });
      report.timedOut.push(sandbox.id);
      return true;
    }
    if (sandbox.idleTimeoutMinutes !== null) {
      const lastActive = sandbox.lastActivityAt ? toMillis(sandbox.lastActivityAt) : started;
      if (now >= lastActive + sandbox.idleTimeoutMinutes * 60_000) {
        await this.lifecycle.terminate(sandbox, {
          status: 'TIMEOUT',
          errorType: 'TIMEOUT',
          errorMessage: `The sandbox was idle for ${sandbox.idleTimeoutMinutes} minute(s)`,
          terminationReason: 'idle_timeout',
        });
        report.idled.push(sandbox.id);
        return true;
      }
    }
    return false;
  }

  /**
   * Removes containers that no live row owns. Ended rows keep their container for a grace period.
   * A removal that fails is retried on later passes, waiting longer after each failure.
   */
  private async removeOrphans(containers: Map<string, RuntimeSandboxState>, now: number, report: ReconcileReport): Promise<void> {
    const listed = new Set([...containers.values()].map((c) => c.runtimeId));
    for (const runtimeId of this.removeRetries.keys()) if (!listed.has(runtimeId)) this.removeRetries.delete(runtimeId);
    const candidates = [...containers.values()].filter((c) => !this.view.has(c.sandboxId) && !this.lifecycle.isProvisioning(c.sandboxId));
    if (candidates.length === 0) return;
    const rows = new Map((await this.store.getSandboxes(candidates.map((c) => c.sandboxId))).map((s) => [s.id, s]));
    await forEachLimited(candidates, this.concurrency, async (container) => {
      const row = rows.get(container.sandboxId);
      // Read after the runtime listing: a sandbox created since this pass began is live, not an orphan.
      if (row && ACTIVE_STATUSES.includes(row.status)) return;
      const endedAt = row?.terminatedAt ? toMillis(row.terminatedAt) : 0;
      const keepForLogs = row !== undefined && row.terminationReason !== 'deleted' && !container.running && now - endedAt < ENDED_CONTAINER_GRACE_MS;
      if (keepForLogs) return;
      const retry = this.removeRetries.get(container.runtimeId);
      if (retry && now < retry.retryAt) return;
      if (!(await this.lifecycle.removeQuietly(container.runtimeId))) {
        const attempts = (retry?.attempts ?? 0) + 1;
        const wait = Math.min(REMOVE_RETRY_MAX_MS, REMOVE_RETRY_BASE_MS * 2 ** (attempts - 1));
        this.removeRetries.set(container.runtimeId, { attempts, retryAt: now + wait });
        report.removeFailed.push(container.sandboxId);
        return;
      }
      this.removeRetries.delete(container.runtimeId);
      if (row?.runtimeId === container.runtimeId) await this.store.updateSandbox(row.id, { runtimeId: null }, TERMINAL_STATUSES);
      report.orphansRemoved.push(container.sandboxId);
    });
  }
}

function emptyReport(): ReconcileReport {
  return {
    timedOut: [],
    idled: [],
    lost: [],
    exited: [],
    adopted: [],
    provisioned: [],
    orphansRemoved: [],
    removeFailed: [],
    purged: 0,
    checkpointsSwept: 0,
    egressApplied: [],
    egressFailed: [],
    repaused: [],
  };
}

/** When a RUNNING row's lifetime or idle limit runs out, as far as the row says (Infinity: never). */
function deadlineOf(row: SandboxRecord, now: number): number {
  const started = row.startedAt ? toMillis(row.startedAt) : now;
  let deadline = row.timeoutMinutes > 0 ? started + row.timeoutMinutes * 60_000 + row.pausedMs : Infinity;
  if (row.idleTimeoutMinutes !== null) {
    const lastActive = row.lastActivityAt ? toMillis(row.lastActivityAt) : started;
    deadline = Math.min(deadline, lastActive + row.idleTimeoutMinutes * 60_000);
  }
  return deadline;
}

/** Runs `work` over `items`, at most `limit` at a time. */
async function forEachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

import type { Logger } from 'pino';
import type { RuntimeSandboxState } from '../runtime/runtime.js';
import type { SandboxLifecycle } from '../services/sandbox-lifecycle.js';
import { ACTIVE_STATUSES, type SandboxRecord } from '../services/sandbox-model.js';
import type { Store } from '../store/store.js';
import { toMillis } from '../util/time.js';

/** How long an ended sandbox's container is kept (for its logs) before the reconciler removes it. */
const ENDED_CONTAINER_GRACE_MS = 10 * 60_000;

/** What one pass changed, for logs and tests. */
export interface ReconcileReport {
  timedOut: string[];
  idled: string[];
  lost: string[];
  exited: string[];
  adopted: string[];
  provisioned: string[];
  orphansRemoved: string[];
  /** Ended rows deleted because they passed the retention period. */
  purged: number;
}

/**
 * Owns the lifecycle over time. Each pass reads the store and the runtime and makes them agree:
 * - RUNNING past `startedAt + timeoutMinutes` → TIMEOUT; past its idle timeout → TIMEOUT (`idle_timeout`);
 * - a live row whose container exited → TERMINATED with its exit code, or ERROR/OOM_KILLED;
 * - a live row whose container vanished → ERROR/RUNTIME_LOST;
 * - PENDING rows, and PROVISIONING rows nobody is provisioning (a restart) → provisioned, or
 *   adopted when their container is already running;
 * - containers with no live row → removed (ended rows keep theirs for a grace period, for logs);
 * - ended rows older than the retention period → deleted.
 * Everything it decides comes from the store plus the runtime, so a restart loses nothing.
 */
export class Reconciler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<ReconcileReport> | null = null;

  constructor(
    private readonly store: Store,
    private readonly lifecycle: SandboxLifecycle,
    private readonly intervalMs: number,
    private readonly log: Logger,
    /** How long ended sandboxes stay readable; older rows are purged. */
    private readonly retentionMs = 168 * 3_600_000,
  ) {}

  /** Runs one pass now (or joins the pass in progress). */
  reconcile(now = Date.now()): Promise<ReconcileReport> {
    if (!this.running) {
      this.running = this.pass(now).finally(() => {
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

  private async pass(now: number): Promise<ReconcileReport> {
    const report: ReconcileReport = { timedOut: [], idled: [], lost: [], exited: [], adopted: [], provisioned: [], orphansRemoved: [], purged: 0 };
    // Only this instance's sandboxes: other replicas sharing the store reconcile their own.
    const live = await this.store.findSandboxes({ activeOnly: true, runtimeOwner: this.lifecycle.instanceId }, 1_000_000);
    const runtime = this.lifecycle.runtime;
    const containers = new Map<string, RuntimeSandboxState>();
    if (runtime) {
      for (const state of await runtime.list()) containers.set(state.sandboxId, state);
    }

    for (const sandbox of live) {
      if (sandbox.status === 'RUNNING') {
        if (await this.enforceTimeouts(sandbox, now, report)) continue;
        if (!runtime) continue;
        const container = containers.get(sandbox.id);
        if (!container) {
          await this.lifecycle.terminate(sandbox, {
            status: 'ERROR',
            errorType: 'RUNTIME_LOST',
            errorMessage: 'The sandbox container disappeared from the runtime',
            terminationReason: 'runtime_lost',
          });
          report.lost.push(sandbox.id);
        } else if (!container.running) {
          await this.lifecycle.recordExit(sandbox.id, container.exitCode ?? 0, container.oomKilled);
          report.exited.push(sandbox.id);
        }
      } else if ((sandbox.status === 'PENDING' || sandbox.status === 'PROVISIONING') && runtime) {
        if (this.lifecycle.isProvisioning(sandbox.id)) continue;
        const container = containers.get(sandbox.id);
        if (sandbox.status === 'PROVISIONING' && container?.running) {
          const adopted = await this.store.updateSandbox(
            sandbox.id,
            { status: 'RUNNING', runtimeId: container.runtimeId, startedAt: new Date(now).toISOString() },
            ['PROVISIONING'],
          );
          if (adopted) report.adopted.push(sandbox.id);
          continue;
        }
        if (container) await this.lifecycle.removeQuietly(container.runtimeId);
        containers.delete(sandbox.id);
        await this.store.updateSandbox(sandbox.id, { status: 'PENDING' }, ['PROVISIONING']);
        this.lifecycle.provision(sandbox.id);
        report.provisioned.push(sandbox.id);
      }
    }

    if (runtime) await this.removeOrphans(live, containers, now, report);
    report.purged = await this.store.purgeEndedSandboxes(new Date(now - this.retentionMs).toISOString(), 1000);
    if (report.timedOut.length + report.idled.length + report.lost.length + report.exited.length + report.orphansRemoved.length + report.purged > 0) {
      this.log.info(report, 'reconciled');
    }
    return report;
  }

  /** Ends a RUNNING sandbox past its lifetime or idle limit. True when it ended. */
  private async enforceTimeouts(sandbox: SandboxRecord, now: number, report: ReconcileReport): Promise<boolean> {
    const started = sandbox.startedAt ? toMillis(sandbox.startedAt) : now;
    if (sandbox.timeoutMinutes > 0 && now >= started + sandbox.timeoutMinutes * 60_000) {
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

  /** Removes containers that no live row owns. Ended rows keep their container for a grace period. */
  private async removeOrphans(
    live: SandboxRecord[],
    containers: Map<string, RuntimeSandboxState>,
    now: number,
    report: ReconcileReport,
  ): Promise<void> {
    const liveIds = new Set(live.filter((s) => ACTIVE_STATUSES.includes(s.status)).map((s) => s.id));
    const candidates = [...containers.values()].filter((c) => !liveIds.has(c.sandboxId) && !this.lifecycle.isProvisioning(c.sandboxId));
    if (candidates.length === 0) return;
    const rows = new Map((await this.store.getSandboxes(candidates.map((c) => c.sandboxId))).map((s) => [s.id, s]));
    for (const container of candidates) {
      const row = rows.get(container.sandboxId);
      // Read after the runtime listing: a sandbox created since this pass began is live, not an orphan.
      if (row && ACTIVE_STATUSES.includes(row.status)) continue;
      const endedAt = row?.terminatedAt ? toMillis(row.terminatedAt) : 0;
      const keepForLogs = row !== undefined && row.terminationReason !== 'deleted' && !container.running && now - endedAt < ENDED_CONTAINER_GRACE_MS;
      if (keepForLogs) continue;
      await this.lifecycle.removeQuietly(container.runtimeId);
      report.orphansRemoved.push(container.sandboxId);
    }
  }
}

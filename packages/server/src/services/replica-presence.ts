import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Store } from '../store/store.js';

/** What {@link ReplicaPresence} reads and writes. */
export type ReplicaStore = Pick<Store, 'heartbeatReplica' | 'removeReplica' | 'liveReplicas' | 'liveReplicasOn' | 'acquireLease' | 'releaseLease'>;

/** Whether process `pid` exists on this host (EPERM: it does, as another user). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Tuning and identity of {@link ReplicaPresence}. */
export interface ReplicaPresenceOptions {
  /** The deployment (`CORRAL_INSTANCE_ID`) this replica belongs to. */
  instanceId: string;
  /** This process's id among the deployment's replicas (`CORRAL_REPLICA_ID`). */
  replicaId: string;
  /** How long a heartbeat and the leader lease last unrenewed; both are renewed every quarter of it. */
  leaseMs: number;
  /**
   * Whether the runtime driver's sandboxes are reachable from every replica (`sharedRuntime`).
   * False: `start()` refuses while another replica of the deployment stays live.
   */
  sharedRuntime: boolean;
  /** The runtime driver's name, for the refusal's message. */
  runtimeName: string;
}

/** Thrown by `ReplicaPresence.start()` when the driver's sandboxes cannot be shared and another replica is live. */
export class UnsharedRuntimeError extends Error {}

/**
 * This process's presence among the replicas of one deployment sharing a store: a heartbeat row
 * (`replicas`) renewed every quarter of the lease, whose lapse lets other replicas adopt the
 * provisioning work this one claimed (`Store.claimProvisioning`), and the reconciler's leader lease
 * (`leases`, named `reconciler:<instanceId>`), so one replica at a time reconciles the deployment's
 * sandboxes. Every expiry is on the database's clock.
 */
export class ReplicaPresence {
  private timer: NodeJS.Timeout | null = null;
  private beating: Promise<void> | null = null;
  /** Whether the last leader-lease attempt got it. */
  private leading = false;
  private stopped = false;
  /** This host's name, in the heartbeat: a restart here can tell a dead predecessor. */
  private readonly host = hostname();

  constructor(
    private readonly store: ReplicaStore,
    private readonly options: ReplicaPresenceOptions,
    private readonly log: Logger,
  ) {}

  /** This process's replica id. */
  get replicaId(): string {
    return this.options.replicaId;
  }

  /** The leader lease's name: one per deployment. */
  get leaderLease(): string {
    return `reconciler:${this.options.instanceId}`;
  }

  /**
   * Writes the first heartbeat and starts renewing it; first removes the heartbeats of replicas of
   * the deployment on this host whose process is gone (a crash's predecessor). With a driver whose sandboxes live on one
   * host (`sharedRuntime` false), another live replica of the same deployment is an error: this
   * waits up to one lease for the other heartbeats to lapse (a killed predecessor's do), then throws
   * {@link UnsharedRuntimeError} naming them.
   */
  async start(): Promise<void> {
    await this.heartbeat();
    await this.reapDeadPredecessors();
    if (!this.options.sharedRuntime) {
      const deadline = Date.now() + this.options.leaseMs;
      let others = await this.others();
      while (others.length > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(500, this.options.leaseMs / 4)));
        others = await this.others();
      }
      if (others.length > 0) {
        await this.store.removeReplica(this.options.replicaId);
        throw new UnsharedRuntimeError(
          `CORRAL_INSTANCE_ID=${this.options.instanceId} already has a live replica (${others.join(', ')}), and the ${this.options.runtimeName} driver's sandboxes live on one host: ` +
            'replicas of one deployment need a driver they can share (kubernetes, or docker on one engine); give separate servers their own CORRAL_INSTANCE_ID',
        );
      }
    }
    this.timer = setInterval(() => void this.beat(), Math.max(100, Math.floor(this.options.leaseMs / 4)));
    this.timer.unref();
  }

  private heartbeat(): Promise<void> {
    return this.store.heartbeatReplica(this.options.replicaId, this.options.instanceId, this.options.leaseMs, { host: this.host, pid: process.pid });
  }

  /**
   * Deletes the heartbeats (and leases) of this deployment's replicas on this host whose process is
   * gone: a restart after a crash takes over the leader lease and the dead one's provisioning at
   * once instead of after a lease. (A pid reused by another process counts as alive: the lease then
   * lapses on its own.)
   */
  private async reapDeadPredecessors(): Promise<void> {
    for (const other of await this.store.liveReplicasOn(this.options.instanceId, this.host)) {
      if (other.id === this.options.replicaId || other.pid <= 0 || processAlive(other.pid)) continue;
      await this.store.removeReplica(other.id);
      this.log.info({ replicaId: other.id, pid: other.pid }, 'removed the heartbeat of a replica on this host whose process is gone');
    }
  }

  /** The deployment's live replicas other than this one. */
  private async others(): Promise<string[]> {
    return (await this.store.liveReplicas(this.options.instanceId)).filter((id) => id !== this.options.replicaId);
  }

  /** Renews the heartbeat, and the leader lease while this replica leads. */
  private beat(): Promise<void> {
    if (this.beating || this.stopped) return this.beating ?? Promise.resolve();
    this.beating = (async () => {
      try {
        await this.heartbeat();
        if (this.leading) this.leading = await this.store.acquireLease(this.leaderLease, this.options.replicaId, this.options.leaseMs);
      } catch (error) {
        this.log.warn({ err: error, replicaId: this.options.replicaId }, 'could not renew the replica heartbeat');
      }
    })().finally(() => {
      this.beating = null;
    });
    return this.beating;
  }

  /**
   * Takes or renews the reconciler's leader lease. True when this replica leads now: its lease
   * lasts `leaseMs` from now (database clock) and the heartbeat renews it meanwhile.
   */
  async tryLead(): Promise<boolean> {
    if (this.stopped) return false;
    const was = this.leading;
    this.leading = await this.store.acquireLease(this.leaderLease, this.options.replicaId, this.options.leaseMs);
    if (this.leading !== was) this.log.info({ replicaId: this.options.replicaId, leading: this.leading }, this.leading ? 'this replica now reconciles the deployment' : 'another replica reconciles the deployment');
    return this.leading;
  }

  /** The ids of the deployment's replicas whose heartbeat has not lapsed (this one included while it runs). */
  async liveReplicas(): Promise<Set<string>> {
    return new Set(await this.store.liveReplicas(this.options.instanceId));
  }

  /**
   * Stops renewing, gives the leader lease up and deletes the heartbeat, so the other replicas
   * adopt what this one leaves at once instead of after a lease. Call after provisioning settled.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.beating;
    try {
      // Gives its leases (the leader lease) up too.
      await this.store.removeReplica(this.options.replicaId);
    } catch (error) {
      this.log.warn({ err: error }, 'could not remove the replica heartbeat; it lapses on its own');
    }
    this.leading = false;
  }
}

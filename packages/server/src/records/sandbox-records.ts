/** Lifecycle statuses, as the Prime API names them. */
export const SANDBOX_STATUSES = ['PENDING', 'PROVISIONING', 'RUNNING', 'PAUSED', 'ERROR', 'TERMINATED', 'TIMEOUT'] as const;

/** A sandbox's lifecycle status. */
export type SandboxStatus = (typeof SANDBOX_STATUSES)[number];

/** Statuses a sandbox never leaves. */
export const TERMINAL_STATUSES: readonly SandboxStatus[] = ['ERROR', 'TERMINATED', 'TIMEOUT'];

/** Statuses in which a sandbox still holds (or is about to hold) runtime resources. */
export const ACTIVE_STATUSES: readonly SandboxStatus[] = ['PENDING', 'PROVISIONING', 'RUNNING', 'PAUSED'];

/** `errorType` values the Prime SDK branches on, plus Corral's own. */
export type SandboxErrorType = 'OOM_KILLED' | 'TIMEOUT' | 'IMAGE_PULL_FAILED' | 'START_FAILED' | 'RUNTIME_LOST' | 'IDLE_TIMEOUT' | 'ADMISSION_TIMEOUT';

/** Whether a status is terminal. */
export function isTerminal(status: SandboxStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** Where every sandbox's workspace volume is mounted. */
export const DISK_MOUNT_PATH = '/sandbox-workspace';

/** A sandbox as the store holds it. Times are ISO-8601 UTC strings. */
export interface SandboxRecord {
  id: string;
  name: string;
  dockerImage: string;
  startCommand: string | null;
  cpuCores: number;
  memoryGb: number;
  diskSizeGb: number;
  gpuCount: number;
  gpuType: string | null;
  vm: boolean;
  /**
   * Whether the sandbox has (or gets) a network interface: false for `network_access: false` and
   * for an empty allow list at create. Fixed at create; the egress policy below narrows it.
   */
  networkAccess: boolean;
  /** The egress allow list, normalized; null: none. `[]` is no egress at all. */
  networkAllowlist: string[] | null;
  /** The egress deny list, normalized; null: none. At most one of the two lists is non-null. */
  networkDenylist: string[] | null;
  /** The policy's generation: 1 at create, bumped by every `PUT …/egress-policy`. */
  egressGeneration: number;
  /** The newest generation the runtime enforces; 0 until the sandbox runs. */
  egressAppliedGeneration: number;
  status: SandboxStatus;
  timeoutMinutes: number;
  idleTimeoutMinutes: number | null;
  terminationReason: string | null;
  environmentVars: Record<string, string> | null;
  /** Secret values; never leave the server except into the sandbox's environment. */
  secrets: Record<string, string> | null;
  advancedConfigs: Record<string, unknown> | null;
  labels: string[];
  userId: string;
  teamId: string | null;
  region: string | null;
  registryCredentialsId: string | null;
  guaranteed: boolean;
  idempotencyKey: string | null;
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  terminatedAt: string | null;
  /** Last gateway operation (exec, upload, download, read-file); drives the idle timeout. */
  lastActivityAt: string | null;
  exitCode: number | null;
  errorType: string | null;
  errorMessage: string | null;
  /** The runtime driver that owns this sandbox's container, once one was asked to. */
  runtimeDriver: string | null;
  /** The driver's handle for the container. */
  runtimeId: string | null;
  /**
   * The deployment (`CORRAL_INSTANCE_ID`, shared by all its replicas) whose runtime runs this
   * sandbox; only its replicas provision and reconcile it.
   */
  runtimeOwner: string | null;
  /**
   * The replica (`CORRAL_REPLICA_ID`) that holds this sandbox's provisioning work while it is
   * PENDING or PROVISIONING: a claim that lasts while that replica's heartbeat does, after which
   * another replica may adopt the work (`Store.claimProvisioning`). Null: nobody claimed it.
   */
  provisioner: string | null;
  /**
   * When a create still waiting for capacity ends in ERROR (`ADMISSION_TIMEOUT`), ISO time; null:
   * it waits as long as it takes. Set at create from `admission_timeout_seconds` (a Corral extension).
   */
  admissionDeadline: string | null;
  /**
   * The Kubernetes object that runs the sandbox (its Pod's name) on the kubernetes driver, as its
   * `create` reported it; null on other drivers and before it runs. Prime's `kubernetesJobId`.
   */
  kubernetesJobId: string | null;
  /** When the sandbox was paused (ISO time) while it is PAUSED; null otherwise. */
  pausedAt: string | null;
  /**
   * Milliseconds the sandbox spent paused before its last resume, summed: its `timeout_minutes`
   * deadline is `startedAt + timeoutMinutes + pausedMs` (the lifetime clock stops while paused).
   */
  pausedMs: number;
  /**
   * The checkpoint the sandbox was restored (or forked) from, when it was (migration 0015); its
   * filesystem started as that checkpoint's. Served as the Corral extension field `checkpointId`.
   */
  checkpointId: string | null;
}

/** Fields a status transition may set besides `status`. */
export type SandboxPatch = Partial<
  Pick<
    SandboxRecord,
    | 'status'
    | 'timeoutMinutes'
    | 'labels'
    | 'terminationReason'
    | 'startedAt'
    | 'terminatedAt'
    | 'lastActivityAt'
    | 'exitCode'
    | 'errorType'
    | 'errorMessage'
    | 'runtimeDriver'
    | 'runtimeId'
    | 'runtimeOwner'
    | 'provisioner'
    | 'idleTimeoutMinutes'
    | 'egressAppliedGeneration'
    | 'kubernetesJobId'
    | 'pausedAt'
    | 'pausedMs'
  >
>;

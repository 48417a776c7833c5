import type { ImageBuilder } from './image-builder.js';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { RuntimeErrorKind } from '../errors/error-codes.js';
import type { EgressPolicy } from './egress/egress-policy.js';

export type { EgressPolicy } from './egress/egress-policy.js';

/** Everything a driver needs to start one sandbox. Sizes are bytes; the driver enforces every limit. */
export interface SandboxSpec {
  /** The Corral sandbox id; drivers label what they create with it. */
  sandboxId: string;
  /** Image reference, as the user gave it (`python:3.11-slim`, `127.0.0.1:5000/busybox:1`). */
  image: string;
  /** Credentials for the image's registry, when the user named a credential set. */
  registryAuth?: { username: string; password: string; serverAddress: string };
  /** Run through `/bin/sh -c`. Null: keep the sandbox alive doing nothing. */
  startCommand: string | null;
  /** Environment variables and secrets, merged. */
  env: Record<string, string>;
  cpuCores: number;
  memoryBytes: number;
  /** Limit on what the sandbox can write to its filesystem. */
  diskBytes: number;
  pidsLimit: number;
  /** True: egress to the outside world. False: no route out at all. */
  networkAccess: boolean;
  /**
   * What the sandbox may reach when `networkAccess` is true; absent: everything. An empty allow
   * list means no route out at all, as `networkAccess: false`.
   */
  egress?: EgressPolicy;
  gpuCount: number;
  gpuType: string | null;
  /** The writable workspace directory that must exist in the sandbox (`/sandbox-workspace`). */
  workspacePath: string;
  /**
   * Start from a checkpoint instead of the bare image: the sandbox's filesystem is the image plus
   * the checkpoint's layers (shared copy-on-write, never copied), `image` still names the image the
   * checkpoint was made from. With `memory`, its processes continue from the captured memory too
   * (drivers with `capabilities().memoryCheckpoint`).
   */
  checkpoint?: { ref: string; memory: boolean };
}

/** How to run one process inside a sandbox. */
export interface ExecRequest {
  /** argv; use `['/bin/sh', '-c', script]` for a shell string. */
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** `root`, a uid, or `uid:gid` / `user:group`. */
  user?: string;
  /** Allocate a PTY of this size; stdout then carries the terminal's output and stderr is empty. */
  tty?: { rows: number; cols: number };
  /** Keep stdin open for writing; otherwise the process sees EOF at once. */
  stdin?: boolean;
}

/** How a process ended. */
export interface ExecExit {
  /** Exit status; 128+N when killed by signal N. */
  exitCode: number;
}

/**
 * A running process inside a sandbox. Output streams apply back-pressure: read (or `resume()`)
 * both of them, or the process stalls once its pipe buffers fill and `wait()` never resolves.
 */
export interface ExecProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Present when the request asked for stdin. End it to send EOF. */
  readonly stdin: Writable | null;
  /** Resolves when the process has exited and its output streams have ended. */
  wait(): Promise<ExecExit>;
  /** Sends a signal to the process and everything it started. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Changes the PTY size; a no-op without a PTY. */
  resize(rows: number, cols: number): Promise<void>;
}

/** A sandbox as its driver sees it. */
export interface RuntimeSandboxState {
  sandboxId: string;
  runtimeId: string;
  running: boolean;
  /** Set once the sandbox's main process has exited. */
  exitCode: number | null;
  oomKilled: boolean;
  /**
   * True while the sandbox's processes are frozen by `pause()` (absent on drivers that cannot
   * pause, and where the driver does not know).
   */
  paused?: boolean;
}

/** Resource usage, for `stats`. */
export interface RuntimeStats {
  memoryBytes: number;
  memoryLimitBytes: number;
  cpuUsageNanos: number;
  pids: number;
}

/** An image pull a driver made from a registry (a cached image is no pull). */
export interface ImagePullReport {
  /** The reference pulled. */
  image: string;
  /** Wall time of the pull, seconds. */
  seconds: number;
  /** Bytes downloaded, where the driver counts them (oci); null where it does not (docker's engine pulls). */
  bytes: number | null;
  /** False when the pull failed. */
  ok: boolean;
}

/** A sandbox's main process ended (on its own, killed, or OOM-killed). */
export interface RuntimeExitEvent {
  type: 'exited';
  sandboxId: string;
  runtimeId: string;
  exitCode: number;
  oomKilled: boolean;
}

/** Something the driver noticed about a sandbox it owns, or an image pull it made. */
export type RuntimeEvent = RuntimeExitEvent | ({ type: 'image-pulled' } & ImagePullReport);


/**
 * An error from a driver. Its kind is mapped to the codes callers see in one place: the
 * registry's `RUNTIME_FAILURES` (errors/error-codes.ts).
 */
export class RuntimeError extends Error {
  constructor(
    readonly kind: RuntimeErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RuntimeError';
  }
}

/** A read of a file in a sandbox that failed there; `stderr` holds what the read command said. */
export class SandboxReadError extends Error {
  constructor(
    readonly path: string,
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(`reading ${path} failed: ${stderr.trim() || `exit ${exitCode}`}`);
    this.name = 'SandboxReadError';
  }
}

/**
 * Byte ranges of one file inside a sandbox, read with nothing staged on the host and memory bounded
 * whatever the file's size (`SandboxRuntime.openFileReader`). Sequential reads are cheapest.
 */
export interface SandboxFileReader {
  /** Absolute path of the file in the sandbox. */
  readonly path: string;
  /**
   * Up to `length` bytes from `offset` (fewer only at the end of the file); null at or past the end.
   * Throws `SandboxReadError` when the sandbox cannot read the file.
   */
  read(offset: number, length: number): Promise<Buffer | null>;
  /** True while a copy is open (work in the sandbox and read-ahead on the host). */
  readonly active: boolean;
  /** Stops the current copy, if any (the next read starts another). */
  close(): void;
}

/** One line of a sandbox's egress log. */
export interface EgressLogEntry {
  /** ISO-8601 time. */
  at: string;
  /** `dns`: a name the sandbox asked for; `connect`: a connection it opened or tried. */
  kind: 'dns' | 'connect';
  /** The name asked for (`dns`) or the address connected to (`connect`). */
  destination: string;
  /** Destination port (`connect`); null for `dns`. */
  port: number | null;
  /** `tcp`, `udp`, `icmp`… */
  protocol: string;
  verdict: 'allowed' | 'denied';
  /** Addresses the answer held (`dns`). */
  answers?: string[];
}

/** What a host can offer, so the API can refuse what it cannot do with a clear 422. */
export interface RuntimeCapabilities {
  gpuCount: number;
  gpuTypes: string[];
  /**
   * The driver enforces `SandboxSpec.egress` at create and implements `setEgressPolicy` and
   * `egressLog`. Absent or false: the API refuses (422 `EGRESS_UNSUPPORTED`) every policy but open
   * and no network, rather than run a sandbox unrestricted.
   */
  egressPolicy?: boolean;
  /**
   * Whether policies may name domains (`api.example.com`, `*.example.com`). False: only IP
   * addresses and CIDRs (the kubernetes driver's NetworkPolicies hold IP blocks only); the API
   * refuses a domain entry with 422 `EGRESS_UNSUPPORTED` naming it. Absent: true.
   */
  egressDomains?: boolean;
  /**
   * Whether `setEgressPolicy` can give a sandbox started with no network (an empty allow list) a
   * network later. False: it keeps only `lo` for good, and the API answers 409 `EGRESS_NO_NETWORK`
   * to a policy that would open it. Absent: true.
   */
  egressOpensNoNetwork?: boolean;
  /**
   * The driver's sandboxes are reachable from every replica of a deployment (same
   * `CORRAL_INSTANCE_ID`): any replica lists, execs in, dials, removes and adopts any of them
   * (kubernetes: one cluster; docker: one engine, with the replicas on its host sharing the data
   * directory). Absent or false (oci: sandboxes live in one process's host): a second live replica
   * of the deployment is refused at startup.
   */
  sharedRuntime?: boolean;
  /**
   * The driver implements `pause` and `resume` (freezes every process of a sandbox, keeping its
   * memory). Absent or false: the API refuses pause and resume with 409 `PAUSE_UNSUPPORTED`.
   */
  pause?: boolean;
  /**
   * The driver implements `checkpoint`, `deleteCheckpoint` and `SandboxSpec.checkpoint` for
   * filesystem checkpoints. Absent or false: the API refuses checkpoints, restores and forks with
   * 409 `CHECKPOINT_UNSUPPORTED`.
   */
  checkpoint?: boolean;
  /** Checkpoints can also capture running processes and their memory (`CheckpointRequest.memory`, CRIU). */
  memoryCheckpoint?: boolean;
  /** When `memoryCheckpoint` is false on a driver that could have it: why not here (what to change). */
  memoryCheckpointUnavailable?: string;
}

/** What `SandboxRuntime.checkpoint` is asked to capture. */
export interface CheckpointRequest {
  /** The Corral checkpoint id; drivers name what they store with it. */
  checkpointId: string;
  /**
   * The ref of the checkpoint the sandbox was started from, when it was: the new checkpoint is
   * stored as what changed since then, on top of it.
   */
  parentRef?: string;
  /** Also capture the running processes and their memory (only where `capabilities().memoryCheckpoint`). */
  memory: boolean;
  /** Called once the capture is taken and the sandbox's processes run again (Prime's `FROZEN`). */
  onFrozen?: () => void;
}

/** A checkpoint as the driver stored it; immutable until `deleteCheckpoint`. */
export interface RuntimeCheckpoint {
  /** The driver's handle for it, given back in `SandboxSpec.checkpoint.ref` and `deleteCheckpoint`. */
  ref: string;
  /** Bytes stored for this checkpoint alone (what it adds over its parent and the image). */
  sizeBytes: number;
  /** True when running processes and their memory were captured too. */
  memory: boolean;
}

/** What `SandboxRuntime.create` made. */
export interface CreatedSandbox {
  /** The driver's handle for the sandbox. */
  runtimeId: string;
  /** The Kubernetes object that runs the sandbox (its Pod's name), on drivers that run sandboxes on Kubernetes; Prime's `kubernetesJobId`. */
  kubernetesJobId?: string;
}

/** The isolation a driver's sandboxes really get; `GET /healthz` reports it and the server logs it at startup. */
export interface RuntimeIsolation {
  /** Root in a sandbox is an unprivileged host id (a user namespace), not host root. */
  userNamespace: boolean;
  /** Every sandbox process runs under a seccomp filter. */
  seccomp: boolean;
  /** The host's cgroup hierarchy that limits sandboxes: 1 (v1 or hybrid) or 2 (unified). */
  cgroupVersion: 1 | 2;
  /** Sandboxes have a cgroup namespace: they see their own cgroup as the root. */
  cgroupNamespace: boolean;
  /** Why `userNamespace` is false, when it is. */
  reason?: string;
}

/** Space on the filesystem that holds a driver's sandbox disks, for admitting creates. */
export interface DiskCapacity {
  /** Bytes free on that filesystem. */
  freeBytes: number;
  totalBytes: number;
  /** Sum of the sizes of the disks the driver holds (sandboxes' and ready pools'), and of disks being made. */
  allocatedBytes: number;
  /** Bytes those disks already take on the filesystem (not free any more). */
  usedBytes: number;
}

/** CPU and memory a driver offers sandboxes (the host's, minus a reserve), for admitting creates. */
export interface SandboxCapacity {
  cpuCores: number;
  memoryBytes: number;
}

/**
 * The one interface every runtime driver implements (`docker`, `oci`, `kubernetes`).
 *
 * Drivers own containers and nothing else: the store, statuses and timeouts belong to the
 * services and the reconciler. Every object a driver creates is labelled with the sandbox id
 * and the server instance, so `list()` can rebuild the picture after a restart.
 */
export interface SandboxRuntime {
  /** `docker`, `oci`, … */
  readonly name: string;
  /** The driver's Dockerfile builder; absent where the driver has none yet. */
  readonly imageBuilder?: ImageBuilder;
  /** Checks the backend answers; starts nothing. */
  init(): Promise<void>;
  capabilities(): RuntimeCapabilities;
  /** What isolation sandboxes get on this host; valid once `init()` has resolved. */
  isolation(): RuntimeIsolation;
  /**
   * The space sandbox disks draw on (undefined when the driver cannot tell). `create()` refuses
   * (`START_FAILED`) a disk that does not fit under the driver's disk policy (runtime/disk-admission.ts).
   */
  diskCapacity(): Promise<DiskCapacity | undefined>;
  /**
   * The CPU and memory sandboxes may reserve (`cpu_cores`, `memory_gb`) before the admission queue
   * holds creates back (times `CORRAL_OVERCOMMIT_CPU`/`_MEMORY`). Absent, or undefined: the driver
   * does not report it and creates are admitted without a capacity check (a Kubernetes scheduler does its own).
   */
  capacity?(): Promise<SandboxCapacity | undefined>;
  /**
   * Pulls the image if needed, creates and starts the sandbox, and resolves once a process
   * can be executed in it. Throws `RuntimeError` (`IMAGE_PULL_FAILED`, `START_FAILED`).
   */
  create(spec: SandboxSpec): Promise<CreatedSandbox>;
  /** Starts a process in a running sandbox. Throws `RuntimeError('NOT_FOUND')` once it is gone. */
  exec(runtimeId: string, request: ExecRequest): Promise<ExecProcess>;
  /** Writes a file from a stream, creating parent directories. Returns the bytes written. */
  putFile(runtimeId: string, path: string, content: Readable): Promise<{ size: number }>;
  /** Streams a file out. Throws `RuntimeError('NOT_FOUND')` when the file does not exist. */
  getFile(runtimeId: string, path: string): Promise<{ size: number; stream: Readable }>;
  /** Opens a reader of byte ranges of a file in a running sandbox; nothing runs until the first read. */
  openFileReader(runtimeId: string, path: string): SandboxFileReader;
  /**
   * Opens a byte stream to `port` on the sandbox's own loopback or network address, however the
   * driver reaches it (a bridge address, or a relay exec'd inside the sandbox when it has no
   * network). Rejects, or errors the stream, with "connection refused" when nothing listens there.
   */
  dial(runtimeId: string, port: number): Promise<Duplex>;
  /** The start command's output, at most `maxBytes` from the end. */
  logs(runtimeId: string, maxBytes: number): Promise<string>;
  stats(runtimeId: string): Promise<RuntimeStats>;
  /** Sandboxes started ahead of creates, and how many recent demand asks for; absent or undefined where there is no warm pool. */
  warmPool?(): { ready: number; target: number } | undefined;
  /** Undefined when the driver has no such sandbox. */
  inspect(runtimeId: string): Promise<RuntimeSandboxState | undefined>;
  /** Kills and removes the sandbox and everything it owns. Idempotent. */
  remove(runtimeId: string): Promise<void>;
  /** Every sandbox this driver instance owns, running or exited. */
  list(): Promise<RuntimeSandboxState[]>;
  /**
   * Replaces the egress policy of a running sandbox, in place: new connections follow it at once
   * and established ones to what it no longer allows are cut. Resolves once it is enforced.
   */
  setEgressPolicy(runtimeId: string, policy: EgressPolicy): Promise<void>;
  /**
   * Freezes every process of a running sandbox (no CPU, memory kept) and resolves once all are
   * frozen. Idempotent. While paused, `exec` and everything built on it (files, dial) throw
   * `RuntimeError('PAUSED')` instead of waiting; `remove` works (it thaws first where it must).
   * Present when `capabilities().pause` is true.
   */
  pause?(runtimeId: string): Promise<void>;
  /** Thaws a paused sandbox: its processes continue where they stopped. Idempotent. */
  resume?(runtimeId: string): Promise<void>;
  /**
   * Captures the sandbox's whole writable filesystem (and, with `memory`, its processes) as an
   * immutable checkpoint. Processes are frozen only for the moment of capture (`onFrozen` fires when
   * they run again); resolves once the checkpoint is stored durably. Throws `RuntimeError`
   * (`NOT_FOUND`, `CHECKPOINT_FAILED` with the reason, e.g. what CRIU could not handle). Present when
   * `capabilities().checkpoint` is true.
   */
  checkpoint?(runtimeId: string, request: CheckpointRequest): Promise<RuntimeCheckpoint>;
  /**
   * Deletes a checkpoint's own data. Idempotent. What sandboxes started from it or checkpoints made
   * on top of it still use stays until they are gone too.
   */
  deleteCheckpoint?(ref: string): Promise<void>;
  /** The sandbox's recent DNS answers and connection attempts, oldest first, at most `limit`. */
  egressLog(runtimeId: string, limit: number): Promise<EgressLogEntry[]>;
  /** Subscribes to exit and OOM events; returns the unsubscribe function. */
  onEvent(listener: (event: RuntimeEvent) => void): () => void;
  /** Releases connections and watchers. Leaves sandboxes running. */
  close(): Promise<void>;
}

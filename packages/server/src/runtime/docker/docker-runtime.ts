import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { ExecFileReader } from '../exec-file-reader.js';
import { getFileViaExec, putFileViaExec } from '../exec-files.js';
import { diskShortfall, filesystemSpace, NO_RESERVE } from '../disk-admission.js';
import type { DiskPolicy } from '../disk-admission.js';
import { type CapacityReserve, hostCapacity } from '../host-capacity.js';
import { RuntimeError } from '../runtime.js';
import type {
  CheckpointRequest,
  DiskCapacity,
  SandboxCapacity,
  EgressLogEntry,
  EgressPolicy,
  ExecProcess,
  ExecRequest,
  RuntimeCapabilities,
  RuntimeCheckpoint,
  RuntimeEvent,
  RuntimeIsolation,
  RuntimeSandboxState,
  RuntimeStats,
  SandboxFileReader,
  SandboxRuntime,
  SandboxSpec,
} from '../runtime.js';
import { DockerDialer } from './docker-dial.js';
import { IDLE_COMMAND } from '../container-policy.js';
import { DEFAULT_SANDBOX_CPU_WEIGHT, setCgroupCpuWeight } from '../cgroup-cpu-weight.js';
import { buildCreateOptions, containerName, LABEL_INSTANCE, LABEL_SANDBOX_ID, sandboxHostname } from './container-spec.js';
import { SandboxEtcFiles } from './etc-files.js';
import { DEFAULT_EXEC_START_TIMEOUT_MS, isConflict, isNotFound, startDockerExec } from './docker-exec.js';
import type { DockerExecOptions } from './docker-exec.js';
import { killContainerProcesses, killStartingExecs } from './cgroup-reaper.js';
import { DockerEventWatcher } from './docker-events.js';
import type { DockerContainerEvent } from './docker-events.js';
import { EgressNetwork } from './egress-network.js';
import { hostHasIpv6 } from '../host-firewall.js';
import type { EgressNetworkOptions } from './egress-network.js';
import { LoopDisks } from './loop-disk.js';
import { DockerCheckpoints, isCheckpointImage, namesCheckpointRepository, LABEL_CHECKPOINT_ID } from './docker-checkpoints.js';
import type { CheckpointSource } from './docker-checkpoints.js';
import { containerNetwork, gatedCommand, loadPolicy, OPEN_GATE_ARGV, prepareNamespace, savePolicy } from './docker-egress.js';
import { EgressChanges } from '../egress/egress-changes.js';
import { EgressEnforcer } from '../egress/egress-enforcer.js';
import type { EgressConnectionLogOptions } from '../egress/egress-enforcer.js';
import type { ConnectionLogSink } from '../egress/egress-log.js';
import { OPEN_EGRESS } from '../egress/egress-policy.js';
import { pullImage, registrySource } from './image-pull.js';
import { type DockerImageBuildOptions, DockerImageBuilder } from './docker-image-builder.js';
import { ContainedDockerImageBuilder } from './docker-contained-builder.js';
import { DEFAULT_BUILD_DISK_BYTES } from '../oci-images/oci-image-builder.js';
import type { ImageBuilder } from '../image-builder.js';
import { parseImageRef } from '../registry/image-ref.js';
import type { ImageRef } from '../registry/image-ref.js';
import { RegistryAccessCheck, credentialsFor } from '../registry/registry-access-check.js';
import { checkRegistryAddress } from '../registry/registry-address-policy.js';
import { orAfter } from '../../util/time.js';

const run = promisify(execFile);

/** Scripts larger than this (bytes) are passed through a file instead of argv. */
const LARGE_ARGUMENT = 100 * 1024;

/** How the driver enforces `diskBytes`. */
export type DiskMode = 'loop' | 'storage-opt' | 'none';

/**
 * What `diskBytes` bounds: `container` = everything the sandbox writes to its root filesystem
 * (`/tmp`, `/usr`, the workspace…); `workspace` = only the workspace path; `none` = nothing.
 */
export type DiskScope = 'container' | 'workspace' | 'none';

/** Options for {@link DockerRuntime}. */
export interface DockerRuntimeOptions {
  /** Server instance name; containers are labelled with it and `list()` only sees its own. */
  instance: string;
  /** Limits of Dockerfile builds (default 2 CPUs, 2 GiB, 30 minutes, no network). */
  imageBuild?: Partial<Pick<DockerImageBuildOptions, 'cpus' | 'memoryBytes' | 'timeoutMs' | 'network'>>;
  /**
   * Contained builds: the daemonless builder (buildah, RUN steps in a user namespace) with its state
   * under `root`, bases from the engine and results copied into it; `init()` falls back to the
   * engine's builder, with a warning, where buildah cannot run. Absent: the engine's builder.
   */
  containedBuilds?: { root: string; diskBytes?: number };
  /**
   * Registries (`host[:port]`) that may be at loopback, private or link-local addresses (and that
   * Corral's own access checks reach over plain HTTP). Every other registry must be public.
   */
  insecureRegistries?: string[];
  /** A dockerode client; default: one built from `DOCKER_HOST` or `/var/run/docker.sock`. */
  docker?: Docker;
  /**
   * Where per-sandbox loop disks live (on the Docker host). Default
   * `$CORRAL_STATE_DIR/docker-disks` or `/var/lib/corral/docker-disks`.
   */
  diskDir?: string;
  /**
   * Where the driver writes each sandbox's /etc/hosts, /etc/resolv.conf and /etc/hostname (mounted
   * read-only; on the Docker host). Default: `etc` beside `diskDir`.
   */
  etcDir?: string;
  /**
   * Where workspace archives of checkpoints live (loop disk mode; on the Docker host). Default:
   * `docker-checkpoints/<instance>` beside `diskDir`.
   */
  checkpointDir?: string;
  /**
   * `auto` (default): `storage-opt` when the engine's storage driver can limit a container's
   * writable layer (btrfs, zfs), else `loop` when this process can make loop disks, else `none`.
   */
  diskMode?: DiskMode | 'auto';
  /** The network sandboxes with network access join, and its firewall. */
  egress?: Partial<EgressNetworkOptions>;
  /** DNS server (`address[:port]`) the egress resolver forwards allowed names to; default the host's first nameserver. */
  egressDnsUpstream?: string;
  /** Addresses allowed names resolve to stay open at least this long, in seconds (default 60). */
  egressTtlFloorSeconds?: number;
  /** Log sandboxes' connection attempts (NFLOG group, and where its reader is compiled); default: DNS only. */
  egressConnectionLog?: EgressConnectionLogOptions;
  /** Kill the whole sandbox when any of its processes is OOM-killed (default true). */
  killOnOom?: boolean;
  /** How long `create` waits for the first exec to work (default 30 s). */
  readyTimeoutMs?: number;
  /**
   * How long an exec may take to start before the driver ends it from the host (its `runc init`
   * killed through the container's cgroup) and it fails with exit code 126. Default 10 s.
   */
  execStartTimeoutMs?: number;
  /**
   * How long `remove()` waits for the engine's `rm -f` before it kills every process of the
   * container through its cgroup and waits again. Default 5 s.
   */
  removeTimeoutMs?: number;
  /**
   * Receives operator-facing warnings from `init()` (e.g. that only the workspace is disk-limited).
   * Default: `process.emitWarning`.
   */
  warn?: (message: string) => void;
  /** Which disks `create()` admits (runtime/disk-admission.ts); default: a disk must only fit in free space. */
  diskPolicy?: DiskPolicy;
  /** What `capacity()` keeps out of the host's CPU and memory (runtime/host-capacity.ts); default none. */
  capacityReserve?: CapacityReserve;
  /**
   * CPU weight (cgroup v2 scale, 1–10000) of the cgroup parent every sandbox container is put under
   * ({@link sandboxCgroupParent}), so a host saturated from inside sandboxes still runs the server
   * promptly (runtime/cgroup-cpu-weight.ts). Written where that cgroup is visible to this process
   * (an engine on this host). Default {@link DEFAULT_SANDBOX_CPU_WEIGHT}; null: containers get
   * Docker's default parent and no weight is written.
   */
  sandboxCpuWeight?: number | null;
}

/**
 * The `CgroupParent` of sandbox containers and the cgroup it names (absolute in the hierarchy):
 * `/corral-docker` with the engine's cgroupfs driver, the `corral.slice` systemd slice
 * (`/corral.slice`) with its systemd driver.
 */
export function sandboxCgroupParent(cgroupDriver: string | undefined): { parent: string; cgroupPath: string } {
  return cgroupDriver === 'systemd' ? { parent: 'corral.slice', cgroupPath: '/corral.slice' } : { parent: '/corral-docker', cgroupPath: '/corral-docker' };
}

/** The parts of `GET /info` the driver reads. */
interface EngineInfo {
  Driver?: string;
  /** CPUs and memory of the engine's host. */
  NCPU?: number;
  MemTotal?: number;
  CgroupVersion?: string;
  /** `cgroupfs` or `systemd`. */
  CgroupDriver?: string;
  SecurityOptions?: string[];
}

/** What the engine's settings give every sandbox (see {@link DockerRuntime.isolation}). */
export function engineIsolation(info: EngineInfo): RuntimeIsolation {
  const options = (info.SecurityOptions ?? []).map((o) => o.split(',').find((f) => f.startsWith('name='))?.slice(5));
  const userNamespace = options.includes('userns');
  return {
    userNamespace,
    seccomp: options.includes('seccomp'),
    cgroupVersion: info.CgroupVersion === '2' ? 2 : 1,
    cgroupNamespace: true,
    ...(userNamespace ? {} : { reason: 'the Docker engine runs without userns-remap (root in a sandbox is host root); set "userns-remap" in daemon.json' }),
  };
}

/** The per-sandbox state the driver keeps in memory. */
interface Tracked {
  removing: boolean;
  oomKilled: boolean;
  /** The disk size the sandbox was created with (0 when unknown, e.g. created before a restart). */
  diskBytes?: number;
}

/** Why the docker driver refuses memory checkpoints. */
const MEMORY_CHECKPOINT_REFUSAL = 'memory checkpoints need the oci driver (CRIU); the docker driver takes filesystem checkpoints only';

/** How many times a pause the runtime could not complete ("unable to freeze") is tried. */
const PAUSE_ATTEMPTS = 5;

/**
 * Runs sandboxes as Docker containers (dockerode over the Engine API).
 *
 * Each sandbox is one container named `corral-<sandboxId>`, labelled with the sandbox id and the
 * driver instance, started with docker-init as PID 1, all capabilities dropped but a small set,
 * `no-new-privileges`, Docker's default seccomp profile and read-only /proc paths, and cgroup limits
 * for CPU, memory (no swap) and pids. See docs/runtime-docker.md.
 */

export class DockerRuntime implements SandboxRuntime {
  readonly name = 'docker';
  /** Dockerfile builds: the contained builder when `init()` found it can run, else the engine's builder. */
  imageBuilder: ImageBuilder;
  /** The engine's builder (transfers, renames and removes of either builder). */
  private readonly engineBuilder: DockerImageBuilder;
  /** The contained builder, until `init()` decides whether it can run here. */
  private containedBuilder: ContainedDockerImageBuilder | undefined;
  private readonly docker: Docker;
  private readonly dialer: DockerDialer;
  private readonly instance: string;
  private readonly insecureRegistries: readonly string[];
  /** Access checks for images the engine already holds. */
  private readonly access: RegistryAccessCheck;
  private readonly disks: LoopDisks;
  private readonly checkpoints: DockerCheckpoints;
  /** Per container, the checkpoint in progress (one at a time: each freezes and thaws it). */
  private readonly checkpointing = new Map<string, Promise<unknown>>();
  private readonly etcFiles: SandboxEtcFiles;
  private readonly egress: EgressNetwork;
  /** The egress resolver and firewall on the network's bridge, once a sandbox needed them. */
  private enforcer: Promise<{ enforcer: EgressEnforcer; gateway: string }> | undefined;
  private readonly enforcerOptions: { upstream?: string; ttlFloorSeconds?: number; connectionLog?: EgressConnectionLogOptions };
  /** Policy changes in flight per sandbox, so they apply one after another. */
  private readonly egressChanges = new EgressChanges();
  private readonly killOnOom: boolean;
  private readonly readyTimeoutMs: number;
  private readonly execStartTimeoutMs: number;
  private readonly removeTimeoutMs: number;
  /** Per container, the host-side unstick in progress (one at a time: it freezes the cgroup). */
  private readonly unsticking = new Map<string, Promise<number>>();
  /** Per container, the live execs (see `DockerExecOptions.live`); `remove()` drops them. */
  private readonly liveExecs = new Map<string, Set<() => void>>();
  private readonly requestedDiskMode: DiskMode | 'auto';
  private diskModeValue: DiskMode = 'none';
  private storageDriver = '';
  private dockerRootDir = '';
  private readonly diskDir: string;
  private readonly diskPolicy: DiskPolicy;
  private readonly capacityReserve: CapacityReserve;
  private readonly sandboxCpuWeight: number | null;
  /** Where sandbox containers go (decided by `init()` from the engine's cgroup driver); null: Docker's default. */
  private cgroupParent: { parent: string; cgroupPath: string } | null = null;
  /** Whether the parent's CPU weight was written, or failed (then warned about): it is tried until then (the cgroup exists only once a container is in it). */
  private cgroupWeightSet = false;
  /** The engine's host (from `docker info` at init); undefined: this host. */
  private engineHost: SandboxCapacity | undefined;
  /** Bytes of disks admitted by creates still in flight. */
  private admittedBytes = 0;
  private readonly warn: (message: string) => void;
  private gpu: RuntimeCapabilities = { gpuCount: 0, gpuTypes: [] };
  private isolationValue: RuntimeIsolation = { userNamespace: false, seccomp: false, cgroupVersion: 1, cgroupNamespace: false, reason: 'not initialized' };
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  private readonly tracked = new Map<string, Tracked>();
  /** Sandboxes (runtime id → sandbox id) whose container went but whose removal failed after (their disk): `list()` shows them so removal is retried. */
  private readonly removeFailed = new Map<string, string>();
  private watcher: DockerEventWatcher | undefined;
  private watcherStart: Promise<void> | undefined;

  constructor(options: DockerRuntimeOptions) {
    this.instance = options.instance;
    this.insecureRegistries = options.insecureRegistries ?? [];
    this.access = new RegistryAccessCheck({ insecureRegistries: this.insecureRegistries });
    this.docker = options.docker ?? new Docker();
    this.dialer = new DockerDialer(this.docker, this);
    this.engineBuilder = new DockerImageBuilder({
      docker: this.docker,
      insecureRegistries: this.insecureRegistries,
      cpus: 2,
      memoryBytes: 2 * 1024 ** 3,
      timeoutMs: 30 * 60_000,
      network: false,
      ...options.imageBuild,
    });
    this.imageBuilder = this.engineBuilder;
    if (options.containedBuilds) {
      const limits = { cpus: 2, memoryBytes: 2 * 1024 ** 3, timeoutMs: 30 * 60_000, network: false, ...options.imageBuild };
      this.containedBuilder = new ContainedDockerImageBuilder({
        docker: this.docker,
        engine: this.engineBuilder,
        root: options.containedBuilds.root,
        diskBytes: options.containedBuilds.diskBytes ?? DEFAULT_BUILD_DISK_BYTES,
        ...limits,
        insecureRegistries: this.insecureRegistries,
        ...(process.env.DOCKER_HOST ? { daemonHost: process.env.DOCKER_HOST } : {}),
      });
    }
    const stateDir = process.env.CORRAL_STATE_DIR ?? '/var/lib/corral';
    this.diskDir = options.diskDir ?? `${stateDir}/docker-disks`;
    this.disks = new LoopDisks(this.diskDir);
    this.diskPolicy = options.diskPolicy ?? NO_RESERVE;
    this.capacityReserve = options.capacityReserve ?? { cpuCores: 0, memoryBytes: 0 };
    this.sandboxCpuWeight = options.sandboxCpuWeight === undefined ? DEFAULT_SANDBOX_CPU_WEIGHT : options.sandboxCpuWeight;
    this.checkpoints = new DockerCheckpoints(this.docker, options.instance, options.checkpointDir ?? join(this.diskDir, '..', 'docker-checkpoints', options.instance));
    this.etcFiles = new SandboxEtcFiles(options.etcDir ?? join(this.diskDir, '..', 'docker-etc', options.instance));
    this.egress = new EgressNetwork(this.docker, {
      name: 'corral-egress',
      bridgeName: 'corral-egress0',
      firewall: true,
      extraBlockedCidrs: [],
      ...options.egress,
    });
    this.enforcerOptions = {
      ...(options.egressDnsUpstream !== undefined ? { upstream: options.egressDnsUpstream } : {}),
      ...(options.egressTtlFloorSeconds !== undefined ? { ttlFloorSeconds: options.egressTtlFloorSeconds } : {}),
      ...(options.egressConnectionLog !== undefined ? { connectionLog: options.egressConnectionLog } : {}),
    };
    this.killOnOom = options.killOnOom ?? true;
    this.readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
    this.execStartTimeoutMs = options.execStartTimeoutMs ?? DEFAULT_EXEC_START_TIMEOUT_MS;
    this.removeTimeoutMs = options.removeTimeoutMs ?? 5000;
    this.requestedDiskMode = options.diskMode ?? 'auto';
    this.warn = options.warn ?? ((message) => process.emitWarning(message, { code: 'CORRAL_DOCKER_DISK' }));
  }

  /** How `diskBytes` is enforced, decided by `init()`. */
  get diskMode(): DiskMode {
    return this.diskModeValue;
  }

  /** What `diskBytes` bounds in the current mode, decided by `init()`. */
  get diskScope(): DiskScope {
    if (this.diskModeValue === 'storage-opt') return 'container';
    if (this.diskModeValue === 'loop') return 'workspace';
    return 'none';
  }

  /** The engine's storage driver (`overlay2`, `btrfs`…), read by `init()`. */
  get engineStorageDriver(): string {
    return this.storageDriver;
  }

  async init(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (error) {
      throw new RuntimeError('RUNTIME_ERROR', `Docker engine does not answer: ${errorText(error)}`, { cause: error });
    }
    const info = (await this.docker.info()) as EngineInfo & { DockerRootDir?: string };
    this.storageDriver = info.Driver ?? '';
    this.isolationValue = engineIsolation(info);
    this.dockerRootDir = info.DockerRootDir ?? '';
    if (this.sandboxCpuWeight !== null) {
      this.cgroupParent = sandboxCgroupParent(info.CgroupDriver);
      await this.applySandboxCpuWeight();
    }
    if (typeof info.NCPU === 'number' && info.NCPU > 0 && typeof info.MemTotal === 'number' && info.MemTotal > 0) {
      this.engineHost = { cpuCores: info.NCPU, memoryBytes: info.MemTotal };
    }
    this.diskModeValue = await this.chooseDiskMode(this.storageDriver);
    if (this.diskModeValue === 'loop') {
      this.warn(
        `Docker storage driver is ${this.storageDriver || 'unknown'}: diskBytes limits only the sandbox workspace (a loop-mounted ext4); ` +
          'writes elsewhere in a sandbox (/tmp, /usr, package installs) are unlimited and can fill the host disk. ' +
          'Run dockerd on a btrfs data-root (scripts/ensure-docker.sh does when it starts dockerd) to limit the whole writable layer.',
      );
    } else if (this.diskModeValue === 'none') {
      this.warn('diskBytes is not enforced: the engine cannot limit a container\'s writable layer and this process cannot make loop disks.');
    }
    if (this.containedBuilder) {
      const missing = await this.containedBuilder.unavailable();
      if (missing === undefined) this.imageBuilder = this.containedBuilder;
      else {
        this.warn(
          `Dockerfile builds use Docker Engine's builder, whose RUN steps run as root with default capabilities and no user namespace or pids limit: ` +
            `the contained builder (buildah, as on the oci driver) cannot run here: ${missing}`,
        );
      }
      this.containedBuilder = undefined;
    }
    this.gpu = await detectGpus();
    await this.checkpoints.sweep().catch((error: unknown) => this.warn(`cleaning up deleted checkpoints failed: ${errorText(error)}`));
    await this.ensureWatcher();
    await this.readoptEgress();
  }

  /**
   * Writes the sandboxes' cgroup parent's CPU weight when that cgroup exists on this host (an
   * engine elsewhere keeps it there: nothing is written). A failure is warned about once; sandboxes
   * keep their own limits either way, only the server's priority over them is missing.
   */
  private async applySandboxCpuWeight(): Promise<void> {
    if (!this.cgroupParent || this.sandboxCpuWeight === null) return;
    try {
      this.cgroupWeightSet = (await setCgroupCpuWeight(this.cgroupParent.cgroupPath, this.sandboxCpuWeight)) !== null;
    } catch (error) {
      // Not tried again (so warned about once).
      this.cgroupWeightSet = true;
      this.warn(`cannot set the CPU weight of the sandboxes' cgroup ${this.cgroupParent.cgroupPath}: ${errorText(error)}`);
    }
  }

  private async chooseDiskMode(storageDriver: string): Promise<DiskMode> {
    if (this.requestedDiskMode !== 'auto') return this.requestedDiskMode;
    if (storageDriver === 'btrfs' || storageDriver === 'zfs') return 'storage-opt';
    if ((await LoopDisks.available()).ok) return 'loop';
    return 'none';
  }

  /** Read from the engine's info: user namespace = `userns-remap`, seccomp = a seccomp profile is on; cgroup namespace: every sandbox gets a private one. */
  isolation(): RuntimeIsolation {
    return { ...this.isolationValue };
  }

  capabilities(): RuntimeCapabilities {
    return { gpuCount: this.gpu.gpuCount, gpuTypes: [...this.gpu.gpuTypes], egressPolicy: true, sharedRuntime: true, pause: true, checkpoint: true, memoryCheckpoint: false };
  }

  /**
   * In `loop` mode, the filesystem of the disk directory and the loop images on it; in
   * `storage-opt` mode, the engine's data root (when this host can see it) and the disk sizes of
   * this process's sandboxes, none counted as written yet. Undefined in `none` mode.
   */
  /** The engine host's CPU cores and memory (`docker info`) minus the configured reserve: what sandboxes may reserve. */
  async capacity(): Promise<SandboxCapacity> {
    return this.engineHost ? hostCapacity(this.capacityReserve, this.engineHost) : hostCapacity(this.capacityReserve);
  }

  async diskCapacity(): Promise<DiskCapacity | undefined> {
    if (this.diskModeValue === 'loop') {
      await mkdir(this.diskDir, { recursive: true });
      const [space, images] = await Promise.all([filesystemSpace(this.diskDir), this.loopImages()]);
      return { ...space, allocatedBytes: images.allocatedBytes + this.admittedBytes, usedBytes: images.usedBytes };
    }
    if (this.diskModeValue === 'storage-opt' && this.dockerRootDir && existsSync(this.dockerRootDir)) {
      const space = await filesystemSpace(this.dockerRootDir);
      let allocatedBytes = this.admittedBytes;
      for (const state of this.tracked.values()) allocatedBytes += state.diskBytes ?? 0;
      return { ...space, allocatedBytes, usedBytes: 0 };
    }
    return undefined;
  }

  /** Sizes of the loop disk images: apparent (allocated) and on the host (used). */
  private async loopImages(): Promise<{ allocatedBytes: number; usedBytes: number }> {
    const names = await readdir(this.diskDir).catch(() => [] as string[]);
    const stats = await Promise.all(names.map((name) => stat(join(this.diskDir, name, 'disk.img')).catch(() => undefined)));
    let allocatedBytes = 0;
    let usedBytes = 0;
    for (const st of stats) {
      if (!st) continue;
      allocatedBytes += st.size;
      usedBytes += st.blocks * 512;
    }
    return { allocatedBytes, usedBytes };
  }

  async create(spec: SandboxSpec): Promise<{ runtimeId: string }> {
    const capacity = await this.diskCapacity();
    // Synchronous from here to the reservation: concurrent creates see each other's admissions.
    if (capacity) {
      const shortfall = diskShortfall(capacity, spec.diskBytes, this.diskPolicy);
      if (shortfall) throw new RuntimeError('START_FAILED', `not enough disk space: ${shortfall}`);
    }
    this.admittedBytes += spec.diskBytes;
    try {
      return await this.createAdmitted(spec);
    } finally {
      this.admittedBytes -= spec.diskBytes;
    }
  }

  private async createAdmitted(spec: SandboxSpec): Promise<{ runtimeId: string }> {
    await this.ensureWatcher();
    if (!spec.checkpoint) return this.createFrom(spec, undefined);
    const source = await this.checkpointSource(spec.checkpoint);
    try {
      return await this.createFrom(spec, source);
    } finally {
      // The container (if made) holds the image from here; a checkpoint deleted meanwhile goes once nothing uses it.
      await this.checkpoints.release(source);
    }
  }

  /**
   * The checkpoint a sandbox is restored from, held until its container exists. No pull: the image
   * is local. A checkpoint with a workspace archive (made in loop disk mode) restores only in loop
   * mode, one without only outside it: the workspace is in the archive, or in the image's layer.
   */
  private async checkpointSource(checkpoint: { ref: string; memory: boolean }): Promise<CheckpointSource> {
    if (checkpoint.memory) throw new RuntimeError('CHECKPOINT_FAILED', MEMORY_CHECKPOINT_REFUSAL);
    const source = await this.checkpoints.acquire(checkpoint.ref);
    const loop = this.diskModeValue === 'loop';
    if ((source.workspaceDigest !== undefined) !== loop) {
      await this.checkpoints.release(source);
      throw new RuntimeError(
        'CHECKPOINT_FAILED',
        `checkpoint ${checkpoint.ref} was made in ${loop ? 'a disk mode without a loop-disk workspace' : 'loop disk mode'} and restores only on a docker driver in ${loop ? 'storage-opt or none' : 'loop'} disk mode (this one is in ${this.diskModeValue})`,
      );
    }
    return source;
  }

  private async createFrom(spec: SandboxSpec, source: CheckpointSource | undefined): Promise<{ runtimeId: string }> {
    const runtimeId = containerName(spec.sandboxId);
    const imageBytes = source ? source.baseImageBytes : await this.ensureImage(spec);
    if (spec.gpuCount > this.gpu.gpuCount) {
      throw new RuntimeError('UNSUPPORTED', `${spec.gpuCount} GPUs requested, this host has ${this.gpu.gpuCount}`);
    }
    const state: Tracked = { removing: false, oomKilled: false };
    this.tracked.set(runtimeId, state);
    if (this.diskModeValue === 'storage-opt') state.diskBytes = spec.diskBytes;
    let workspaceSource: string | null = null;
    // A policy other than open is enforced once Docker has given the sandbox its address: its start
    // command waits behind a gate until the rules are in.
    const policy = spec.networkAccess ? (spec.egress ?? OPEN_EGRESS) : undefined;
    const gated = policy !== undefined && (policy.allowlist !== null || policy.denylist !== null);
    try {
      if (spec.networkAccess) await this.egress.ensure();
      const egress = gated ? await this.egressEnforcer() : undefined;
      if (this.diskModeValue === 'loop') workspaceSource = await this.disks.create(spec.sandboxId, spec.diskBytes);
      if (workspaceSource !== null && source?.workspaceDigest !== undefined) {
        await this.checkpoints.archives.extract(source.workspaceDigest, workspaceSource).catch((error: unknown) => {
          throw new RuntimeError('CHECKPOINT_FAILED', `restoring the checkpoint's workspace failed: ${errorText(error)}`, { cause: error });
        });
      }
      const etcFiles = await this.etcFiles.write(spec.sandboxId, sandboxHostname(spec.sandboxId), spec.networkAccess, egress?.gateway);
      const options = buildCreateOptions(spec, {
        instance: this.instance,
        networkMode: spec.networkAccess ? this.egress.options.name : 'none',
        workspaceSource,
        storageOptBytes: this.diskModeValue === 'storage-opt' ? this.storageOptBytes(spec.diskBytes, imageBytes) : null,
        gpuDriver: this.gpu.gpuCount > 0 ? 'nvidia' : null,
        disableIpv6: hostHasIpv6(),
        etcFiles,
        cgroupParent: this.cgroupParent?.parent ?? null,
      });
      if (gated) options.Cmd = gatedCommand(spec.startCommand ?? IDLE_COMMAND);
      // Restored: the checkpoint's image (by id), while the sandbox still shows the user's image name.
      if (source) options.Image = source.imageId;
      const container = await this.docker.createContainer(options);
      await container.start();
      // The engine makes the parent with the first container in it (and with its default weight).
      if (!this.cgroupWeightSet) await this.applySandboxCpuWeight();
      if (gated && policy) {
        await savePolicy(this.etcFiles.dir, spec.sandboxId, policy);
        await this.enforceEgress(runtimeId, policy);
        await this.openGate(runtimeId);
      }
      await this.waitReady(runtimeId, spec.workspacePath);
      return { runtimeId };
    } catch (error) {
      state.removing = true;
      await this.removeQuietly(runtimeId, spec.sandboxId);
      this.tracked.delete(runtimeId);
      if (error instanceof RuntimeError) throw error;
      throw new RuntimeError('START_FAILED', `starting the sandbox failed: ${errorText(error)}`, { cause: error });
    }
  }

  /**
   * The `StorageOpt.size` for a sandbox. btrfs limits a container's subvolume by its *referenced*
   * bytes, which include the image's files the snapshot shares, so the image's size is added:
   * the sandbox can then write `diskBytes` of its own. zfs's `quota` counts only the clone's own
   * data, so there the size is `diskBytes`.
   */
  private storageOptBytes(diskBytes: number, imageBytes: number): number {
    return this.storageDriver === 'btrfs' ? diskBytes + imageBytes : diskBytes;
  }

  /**
   * Pulls the image when it is missing; returns its size in bytes. Credentials are used only for
   * the registry they were made for. An image the engine already holds under a name that came from
   * a registry (it has a repo digest for that repository, or it was named by id or digest) is used
   * only once the registry confirms the caller's credentials (or anonymous access) may pull it:
   * someone else's authenticated pull, or the operator's `docker login`, does not share it.
   * Before the engine pulls, the registry must not be at a non-public address the operator did not
   * allow, and credentials are tried by Corral's own client first (which sends them only to that
   * registry and its own token service).
   */
  private async ensureImage(spec: SandboxSpec): Promise<number> {
    let ref: ImageRef;
    try {
      ref = parseImageRef(spec.image);
    } catch (error) {
      throw new RuntimeError('IMAGE_PULL_FAILED', `cannot pull ${spec.image}: ${(error as Error).message}`, { cause: error });
    }
    const credentials = credentialsFor(ref, spec.registryAuth);
    let local: Docker.ImageInspectInfo | undefined;
    try {
      local = await this.docker.getImage(spec.image).inspect();
    } catch (error) {
      if (!isNotFound(error)) throw new RuntimeError('RUNTIME_ERROR', `image inspect failed: ${errorText(error)}`, { cause: error });
    }
    // Checkpoints are restored by checkpoint id, never named as an image (by their name or their id).
    if (namesCheckpointRepository(ref) || (local && isCheckpointImage(local))) {
      throw new RuntimeError('IMAGE_PULL_FAILED', `cannot use ${spec.image}: images of Corral's checkpoints are restored by checkpoint id, not named as an image`);
    }
    if (local) {
      const source = registrySource(local, ref);
      if (source) await this.access.check(source, credentials);
      return imageSize(local);
    }
    try {
      await checkRegistryAddress(ref.registry, this.insecureRegistries);
    } catch (error) {
      throw new RuntimeError('IMAGE_PULL_FAILED', `pulling ${spec.image} failed: ${(error as Error).message}`, { cause: error });
    }
    if (credentials) await this.access.check(ref, credentials);
    const started = performance.now();
    let pulled = false;
    try {
      await pullImage(this.docker, spec.image, spec.registryAuth);
      pulled = true;
    } finally {
      this.publish({ type: 'image-pulled', image: ref.canonical, seconds: (performance.now() - started) / 1000, bytes: null, ok: pulled });
    }
    try {
      return imageSize(await this.docker.getImage(spec.image).inspect());
    } catch (error) {
      throw new RuntimeError('IMAGE_PULL_FAILED', `image ${spec.image} is missing after the pull: ${errorText(error)}`, { cause: error });
    }
  }

  /** Runs `mkdir -p <workspace>` (as root) until it succeeds: the sandbox then accepts execs. */
  private async waitReady(runtimeId: string, workspacePath: string): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    let lastError = '';
    const failIfExited = async (): Promise<void> => {
      const info = await this.docker.getContainer(runtimeId).inspect();
      if (info.State.Running) return;
      const logs = await this.logs(runtimeId, 2048).catch(() => '');
      throw new RuntimeError(
        'START_FAILED',
        `the start command exited with code ${info.State.ExitCode} before the sandbox was ready${logs ? `: ${logs.trim()}` : ''}`,
      );
    };
    while (Date.now() < deadline) {
      await failIfExited();
      try {
        const proc = await startDockerExec({
          ...this.execOptions(runtimeId),
          // As root, as the oci driver makes it: an image whose USER may not write / still starts.
          request: { argv: ['/bin/sh', '-c', 'mkdir -p "$1"', 'corral-ready', workspacePath], user: '0' },
        });
        proc.stdout.resume();
        let stderr = '';
        proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
        const { exitCode } = await proc.wait();
        if (exitCode === 0) return;
        lastError = `exit ${exitCode}: ${stderr.trim()}`;
      } catch (error) {
        lastError = errorText(error);
      }
      // A container that stops while being probed fails execs with 126 before the engine reports it
      // stopped: give the state a moment to catch up, then report why it stopped.
      const cannotExec = lastError.startsWith('exit 126') || lastError.startsWith('exit 127');
      for (let i = 0; i < (cannotExec ? 20 : 1); i++) {
        await failIfExited();
        if (cannotExec) await delay(100);
      }
      if (cannotExec) break;
      await delay(50);
    }
    throw new RuntimeError('START_FAILED', `the sandbox never accepted a command (needs /bin/sh): ${lastError}`);
  }

  async exec(runtimeId: string, request: ExecRequest): Promise<ExecProcess> {
    try {
      const prepared = await this.spillLargeScript(runtimeId, request);
      return await startDockerExec({ ...this.execOptions(runtimeId), request: prepared });
    } catch (error) {
      if (isNotFound(error)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`, { cause: error });
      if (isConflict(error) && /paused/i.test(errorText(error))) throw new RuntimeError('PAUSED', `sandbox ${runtimeId} is paused`, { cause: error });
      if (isConflict(error)) throw new RuntimeError('NOT_FOUND', `sandbox ${runtimeId} is not running`, { cause: error });
      throw new RuntimeError('RUNTIME_ERROR', `exec failed: ${errorText(error)}`, { cause: error });
    }
  }

  /**
   * The engine's pause (the cgroup freezer; it answers once the container is frozen). Idempotent:
   * the engine's refusal of a container that is already paused is success.
   */
  async pause(runtimeId: string): Promise<void> {
    await this.afterCheckpoint(runtimeId);
    await this.setPaused(runtimeId, true);
  }

  /** The engine's unpause. Idempotent: its refusal of a container that is not paused is success. */
  async resume(runtimeId: string): Promise<void> {
    await this.afterCheckpoint(runtimeId);
    await this.setPaused(runtimeId, false);
  }

  /** Waits out a checkpoint of the container in progress, whose own freeze and thaw would undo a pause or resume made meanwhile. */
  private async afterCheckpoint(runtimeId: string): Promise<void> {
    await this.checkpointing.get(runtimeId)?.catch(() => undefined);
  }

  /**
   * runc gives up freezing a cgroup whose processes keep running through its retries ("unable to
   * freeze", seen with busy loops on a loaded host); the freezer is left thawed and a new attempt
   * usually makes it. Up to PAUSE_ATTEMPTS tries, 100 ms apart.
   */
  private async setPaused(runtimeId: string, paused: boolean): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.setPausedOnce(runtimeId, paused);
        return;
      } catch (error) {
        if (!(error instanceof RuntimeError) || error.kind !== 'RUNTIME_ERROR' || !/unable to freeze/i.test(error.message) || attempt >= PAUSE_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  private async setPausedOnce(runtimeId: string, paused: boolean): Promise<void> {
    const container = this.docker.getContainer(runtimeId);
    try {
      await (paused ? container.pause() : container.unpause());
    } catch (error) {
      if (isNotFound(error)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`, { cause: error });
      // "already paused" / "not paused" (a 409 or a 500, by engine version): success when the state is the one asked for.
      const state = await container.inspect().then((info) => info.State, () => undefined);
      if (state?.Running && state.Paused === paused) return;
      if (state && !state.Running) throw new RuntimeError('NOT_FOUND', `sandbox ${runtimeId} is not running`, { cause: error });
      throw new RuntimeError('RUNTIME_ERROR', `${paused ? 'pause' : 'unpause'} failed: ${errorText(error)}`, { cause: error });
    }
  }

  /**
   * A filesystem checkpoint: the container's writable layer committed into a checkpoint image (the
   * engine freezes the container for the commit; a paused sandbox stays paused), and in loop disk
   * mode its workspace disk archived in the same freeze (the driver pauses the container around
   * both copies). `onFrozen` fires once the container runs again; resolves once the archive is
   * synced to disk. Memory checkpoints are refused (`CHECKPOINT_FAILED`). See docker-checkpoints.ts.
   */
  async checkpoint(runtimeId: string, request: CheckpointRequest): Promise<RuntimeCheckpoint> {
    if (request.memory) throw new RuntimeError('CHECKPOINT_FAILED', MEMORY_CHECKPOINT_REFUSAL);
    const previous = this.checkpointing.get(runtimeId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.checkpointOnce(runtimeId, request));
    this.checkpointing.set(runtimeId, next);
    try {
      return await next;
    } finally {
      if (this.checkpointing.get(runtimeId) === next) this.checkpointing.delete(runtimeId);
    }
  }

  private async checkpointOnce(runtimeId: string, request: CheckpointRequest): Promise<RuntimeCheckpoint> {
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(runtimeId).inspect();
    } catch (error) {
      if (isNotFound(error)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`, { cause: error });
      throw error;
    }
    if (info.Config.Labels[LABEL_INSTANCE] !== this.instance || this.tracked.get(runtimeId)?.removing === true) {
      throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`);
    }
    const sandboxId = info.Config.Labels[LABEL_SANDBOX_ID] ?? runtimeId.replace(/^corral-/, '');
    try {
      const { ref, sizeBytes } = await this.checkpoints.capture({
        containerId: info.Id,
        checkpointId: request.checkpointId,
        workspaceDir: this.diskModeValue === 'loop' ? this.disks.mountPoint(sandboxId) : null,
        freeze: async () => {
          const state = (await this.docker.getContainer(info.Id).inspect()).State;
          if (!state.Running || state.Paused) return async () => undefined;
          await this.setPaused(runtimeId, true);
          return () => this.setPaused(runtimeId, false);
        },
        ...(request.onFrozen ? { onFrozen: request.onFrozen } : {}),
      });
      return { ref, sizeBytes, memory: false };
    } catch (error) {
      if (error instanceof RuntimeError && error.kind !== 'RUNTIME_ERROR') throw error;
      if (isNotFound(error)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`, { cause: error });
      throw new RuntimeError('CHECKPOINT_FAILED', `checkpoint of ${runtimeId} failed: ${errorText(error)}`, { cause: error });
    }
  }

  /**
   * Deletes a checkpoint's image and workspace archive. Idempotent. Sandboxes restored from it, and
   * checkpoints made on top of it, keep the layers they use (the engine refuses to remove an image
   * in use; the driver removes it once the last user is gone: see docker-checkpoints.ts).
   */
  async deleteCheckpoint(ref: string): Promise<void> {
    try {
      await this.checkpoints.delete(ref);
    } catch (error) {
      throw new RuntimeError('RUNTIME_ERROR', `deleting checkpoint ${ref} failed: ${errorText(error)}`, { cause: error });
    }
  }

  /** What every exec of `runtimeId` is started with: the start bound and the host-side unstick. */
  private execOptions(runtimeId: string): Omit<DockerExecOptions, 'request'> {
    let live = this.liveExecs.get(runtimeId);
    if (!live) this.liveExecs.set(runtimeId, (live = new Set()));
    return { docker: this.docker, containerId: runtimeId, startTimeoutMs: this.execStartTimeoutMs, unstick: () => this.unstick(runtimeId), live };
  }

  /** The engine's full id of container `runtimeId` (from the list, which does not wait on a stuck container). */
  private async containerId(runtimeId: string): Promise<string | undefined> {
    const found = await this.docker.listContainers({ all: true, filters: { name: [runtimeId] } });
    return found.find((c) => c.Names.includes(`/${runtimeId}`))?.Id;
  }

  /** Kills, from the host, the `runc init` of every exec of the container stuck starting on a FIFO; resolves with how many. */
  private unstick(runtimeId: string): Promise<number> {
    const running = this.unsticking.get(runtimeId);
    if (running) return running;
    const next = (async () => {
      const id = await this.containerId(runtimeId);
      return id ? killStartingExecs(id) : 0;
    })().finally(() => this.unsticking.delete(runtimeId));
    this.unsticking.set(runtimeId, next);
    return next;
  }

  /**
   * Linux refuses any single argument over 128 KiB (MAX_ARG_STRLEN), so a `sh -c <script>` whose
   * script is larger is rewritten: the script goes to a file in /tmp (written as the exec's user)
   * and the shell sources it from an open descriptor after deleting the file. `$0` and the
   * positional parameters stay as given.
   */
  private async spillLargeScript(runtimeId: string, request: ExecRequest): Promise<ExecRequest> {
    const [shell, flag, script, ...rest] = request.argv;
    if (shell === undefined || flag !== '-c' || script === undefined || Buffer.byteLength(script) <= LARGE_ARGUMENT) return request;
    if (!/(^|\/)(sh|bash|dash|ash|zsh)$/.test(shell)) return request;
    const file = `/tmp/.corral-script-${randomUUID()}`;
    const writer = await startDockerExec({
      ...this.execOptions(runtimeId),
      request: { argv: ['/bin/sh', '-c', 'umask 077 && cat > "$1"', 'corral-spill', file], user: request.user, stdin: true },
    });
    writer.stdout.resume();
    writer.stderr.resume();
    writer.stdin?.end(script);
    const { exitCode } = await writer.wait();
    if (exitCode !== 0) return request; // Let the kernel's E2BIG surface as usual.
    const loader = `exec 9<'${file}' && rm -f '${file}' && . /dev/fd/9`;
    return { ...request, argv: [shell, '-c', loader, ...rest] };
  }

  putFile(runtimeId: string, path: string, content: Readable): Promise<{ size: number }> {
    return putFileViaExec(this, runtimeId, path, content);
  }

  getFile(runtimeId: string, path: string): Promise<{ size: number; stream: Readable }> {
    return getFileViaExec(this, runtimeId, path);
  }

  openFileReader(runtimeId: string, path: string): SandboxFileReader {
    return new ExecFileReader(this, runtimeId, path);
  }

  /** A direct connection to the container's bridge address; a relay exec'd inside when it has no network. */
  dial(runtimeId: string, port: number): Promise<Duplex> {
    return this.dialer.dial(runtimeId, port);
  }

  async logs(runtimeId: string, maxBytes: number): Promise<string> {
    let raw: Buffer;
    try {
      raw = (await this.docker.getContainer(runtimeId).logs({ stdout: true, stderr: true, follow: false })) as Buffer;
    } catch (error) {
      if (isNotFound(error)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`, { cause: error });
      throw error;
    }
    const text = demuxBuffer(raw);
    const tail = text.length > maxBytes ? text.subarray(text.length - maxBytes) : text;
    return tail.toString('utf8');
  }

  async stats(runtimeId: string): Promise<RuntimeStats> {
    let stats: Docker.ContainerStats;
    try {
      stats = (await this.docker.getContainer(runtimeId).stats({ stream: false, 'one-shot': true } as { stream: false })) as Docker.ContainerStats;
    } catch (error) {
      if (isNotFound(error)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`, { cause: error });
      throw error;
    }
    const cache = (stats.memory_stats.stats as { cache?: number; total_inactive_file?: number } | undefined) ?? {};
    const usage = stats.memory_stats.usage ?? 0;
    return {
      memoryBytes: Math.max(0, usage - (cache.total_inactive_file ?? cache.cache ?? 0)),
      memoryLimitBytes: stats.memory_stats.limit ?? 0,
      cpuUsageNanos: stats.cpu_stats.cpu_usage.total_usage,
      pids: stats.pids_stats?.current ?? 0,
    };
  }

  async inspect(runtimeId: string): Promise<RuntimeSandboxState | undefined> {
    let info: Docker.ContainerInspectInfo | undefined;
    try {
      info = await orAfter(this.docker.getContainer(runtimeId).inspect(), 3000, undefined);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    if (info === undefined) {
      // The engine waits on this container (an exec stuck starting): answer from the list.
      return (await this.list()).find((s) => s.runtimeId === runtimeId);
    }
    if (info.Config.Labels[LABEL_INSTANCE] !== this.instance) return undefined;
    return this.toState(info);
  }

  private toState(info: Docker.ContainerInspectInfo): RuntimeSandboxState {
    const runtimeId = info.Name.replace(/^\//, '');
    const running = info.State.Running || info.State.Restarting;
    return {
      sandboxId: info.Config.Labels[LABEL_SANDBOX_ID] ?? '',
      runtimeId,
      running,
      exitCode: running ? null : info.State.ExitCode,
      oomKilled: info.State.OOMKilled || this.tracked.get(runtimeId)?.oomKilled === true,
      paused: info.State.Paused,
    };
  }

  async remove(runtimeId: string): Promise<void> {
    const state = this.tracked.get(runtimeId) ?? { removing: true, oomKilled: false };
    state.removing = true;
    this.tracked.set(runtimeId, state);
    const sandboxId = runtimeId.replace(/^corral-/, '');
    // From the list, not inspect: inspect waits while an exec is stuck starting in the container.
    const listed = await this.docker.listContainers({ all: true, filters: { name: [runtimeId] } });
    const own = listed.find((c) => c.Names.includes(`/${runtimeId}`));
    if (own && own.Labels[LABEL_INSTANCE] !== this.instance) return;
    try {
      await this.removeQuietly(runtimeId, sandboxId);
    } catch (error) {
      this.removeFailed.set(runtimeId, sandboxId);
      throw error;
    }
    this.removeFailed.delete(runtimeId);
    this.tracked.delete(runtimeId);
    // Restored from a checkpoint (its image's labels are on the container): that checkpoint's image goes now if it was deleted and nothing else uses it.
    if (own?.Labels[LABEL_CHECKPOINT_ID] !== undefined) await this.checkpoints.collect(own.ImageID).catch(() => undefined);
  }

  /**
   * Removes the container, bounded: when the engine's `rm -f` has not finished within
   * `removeTimeoutMs` (an exec stuck starting holds the container), every process of the container
   * is killed through its cgroup from the host, which releases the engine, and the removal is
   * awaited again.
   */
  private async forceRemove(runtimeId: string): Promise<void> {
    const removal = this.docker.getContainer(runtimeId).remove({ force: true, v: true });
    removal.catch(() => undefined);
    const timedOut = Symbol('timeout');
    if ((await orAfter(removal, this.removeTimeoutMs, timedOut)) !== timedOut) return;
    const id = await this.containerId(runtimeId);
    if (id) {
      await killStartingExecs(id);
      await killContainerProcesses(id);
    }
    if ((await orAfter(removal, 3 * this.removeTimeoutMs, timedOut)) === timedOut) {
      throw new RuntimeError('RUNTIME_ERROR', `the engine did not remove ${runtimeId} within ${4 * this.removeTimeoutMs} ms`);
    }
  }

  private async removeQuietly(runtimeId: string, sandboxId: string): Promise<void> {
    try {
      await this.forceRemove(runtimeId);
    } catch (error) {
      // 409: removal already in progress; 404: gone.
      if (!isNotFound(error) && !isConflict(error)) throw error;
      if (isConflict(error)) await this.waitGone(runtimeId);
    }
    // The engine may never close the connection of an exec that was stuck starting: drop them all.
    for (const abandon of this.liveExecs.get(runtimeId) ?? []) abandon();
    this.liveExecs.delete(runtimeId);
    if (this.diskModeValue === 'loop') await this.disks.remove(sandboxId);
    if (this.enforcer) await (await this.enforcer).enforcer.remove(runtimeId);
    await this.etcFiles.remove(sandboxId);
  }

  private async waitGone(runtimeId: string): Promise<void> {
    for (let i = 0; i < 100; i++) {
      try {
        await this.docker.getContainer(runtimeId).inspect();
      } catch (error) {
        if (isNotFound(error)) return;
      }
      await delay(100);
    }
  }

  async list(): Promise<RuntimeSandboxState[]> {
    const containers = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABEL_INSTANCE}=${this.instance}`] },
    });
    const states = await Promise.all(
      containers.map(async (c) => {
        try {
          const info = await orAfter(this.docker.getContainer(c.Id).inspect(), 3000, undefined);
          if (info) return this.toState(info);
          // The engine waits on this container (an exec stuck starting): report it from the list.
          const running = c.State === 'running';
          return { sandboxId: c.Labels[LABEL_SANDBOX_ID] ?? '', runtimeId: (c.Names[0] ?? c.Id).replace(/^\//, ''), running, exitCode: running ? null : 137, oomKilled: false };
        } catch (error) {
          if (isNotFound(error)) return undefined;
          throw error;
        }
      }),
    );
    const listed = states.filter((s): s is RuntimeSandboxState => s !== undefined);
    const seen = new Set(listed.map((s) => s.runtimeId));
    for (const [runtimeId, sandboxId] of this.removeFailed) {
      if (!seen.has(runtimeId)) listed.push({ sandboxId, runtimeId, running: false, exitCode: 137, oomKilled: false });
    }
    return listed;
  }

  /**
   * The egress resolver and firewall on the sandbox network's bridge (started once; the network
   * must exist). Sandboxes recorded with a policy (after a restart) get it re-applied.
   */
  private egressEnforcer(): Promise<{ enforcer: EgressEnforcer; gateway: string }> {
    this.enforcer ??= (async () => {
      await this.egress.ensure();
      const network = await this.docker.getNetwork(this.egress.options.name).inspect() as { IPAM?: { Config?: Array<{ Gateway?: string }> } };
      const gateway = network.IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
      if (!gateway) throw new RuntimeError('RUNTIME_ERROR', `network ${this.egress.options.name} has no IPv4 gateway`);
      const enforcer = new EgressEnforcer({ instance: `docker:${this.instance}`, bridgeName: this.egress.options.bridgeName, gateway, ...this.enforcerOptions });
      await enforcer.start();
      return { enforcer, gateway };
    })().catch((error: unknown) => {
      this.enforcer = undefined;
      throw error;
    });
    return this.enforcer;
  }

  /** Installs `policy` for a running sandbox: its namespace (DNS, route), then its firewall rules. */
  private async enforceEgress(runtimeId: string, policy: EgressPolicy): Promise<void> {
    const { enforcer, gateway } = await this.egressEnforcer();
    const { ip, pid } = await containerNetwork(this.docker, runtimeId, this.egress.options.name);
    if (ip === undefined || pid <= 0) throw new RuntimeError('RUNTIME_ERROR', `sandbox ${runtimeId} has no address on ${this.egress.options.name}`);
    await prepareNamespace(pid, policy, gateway);
    await enforcer.apply(runtimeId, ip, policy);
  }

  /** Lets a gated start command run. */
  private async openGate(runtimeId: string): Promise<void> {
    const proc = await startDockerExec({ ...this.execOptions(runtimeId), request: { argv: OPEN_GATE_ARGV, user: 'root' } });
    proc.stdout.resume();
    proc.stderr.resume();
    const { exitCode } = await proc.wait();
    if (exitCode !== 0) throw new RuntimeError('START_FAILED', `could not start the sandbox's command (exit ${exitCode})`);
  }

  /**
   * Replaces a running sandbox's egress policy. The first policy moves its DNS from Docker's
   * embedded server to the egress resolver (resolv.conf rewritten in place, 127.0.0.11 rejected);
   * an empty allow list deletes its default route, any other policy restores it. A sandbox created
   * without network access (`network none`) cannot get one on this driver: `UNSUPPORTED`.
   */
  async setEgressPolicy(runtimeId: string, policy: EgressPolicy): Promise<void> {
    await this.egressChanges.apply(runtimeId, policy, (next) => this.changeEgress(runtimeId, next));
  }

  private async changeEgress(runtimeId: string, policy: EgressPolicy): Promise<void> {
    let networkMode: string;
    try {
      ({ networkMode } = await containerNetwork(this.docker, runtimeId, this.egress.options.name));
    } catch (error) {
      if (isNotFound(error)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`, { cause: error });
      throw error;
    }
    if (networkMode === 'none') {
      if (policy.allowlist !== null && policy.allowlist.length === 0) return;
      throw new RuntimeError('UNSUPPORTED', `sandbox ${runtimeId} was created without network access; the docker driver cannot give it a network`);
    }
    const sandboxId = runtimeId.replace(/^corral-/, '');
    const { gateway } = await this.egressEnforcer();
    await this.etcFiles.useResolver(sandboxId, gateway);
    await savePolicy(this.etcFiles.dir, sandboxId, policy);
    await this.enforceEgress(runtimeId, policy);
  }

  /**
   * Where the connection logger (reading the NFLOG group of `egressConnectionLog`) delivers the packets the
   * egress firewall logged; they appear in {@link egressLog}.
   */
  get egressConnectionLog(): ConnectionLogSink {
    return {
      recordPacket: (packet) => {
        void this.enforcer?.then(({ enforcer }) => enforcer.recordPacket(packet)).catch(() => undefined);
      },
    };
  }

  /** The sandbox's recent DNS answers and connection attempts, oldest first (empty before it had a policy). */
  async egressLog(runtimeId: string, limit: number): Promise<EgressLogEntry[]> {
    if (!this.enforcer) return [];
    return (await this.enforcer).enforcer.log(runtimeId, limit);
  }

  /**
   * Re-applies the recorded policies of this instance's running sandboxes (after a restart), then
   * removes the firewall's leftovers of sandboxes that are gone (runs in init, before any create).
   */
  private async readoptEgress(): Promise<void> {
    for (const state of await this.list()) {
      if (!state.running) continue;
      const policy = await loadPolicy(this.etcFiles.dir, state.sandboxId).catch(() => undefined);
      if (policy) await this.enforceEgress(state.runtimeId, policy).catch(() => undefined);
    }
    if (this.enforcer) await (await this.enforcer).enforcer.retainOnlyKnown().catch(() => undefined);
  }

  onEvent(listener: (event: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    void this.ensureWatcher().catch(() => undefined);
    return () => this.listeners.delete(listener);
  }

  private ensureWatcher(): Promise<void> {
    if (!this.watcherStart) {
      this.watcher = new DockerEventWatcher(this.docker, `${LABEL_INSTANCE}=${this.instance}`, ['die', 'oom'], (event) => {
        void this.handleEvent(event);
      });
      this.watcherStart = this.watcher.start();
    }
    return this.watcherStart;
  }

  private async handleEvent(event: DockerContainerEvent): Promise<void> {
    const runtimeId = event.attributes.name ?? event.containerId;
    const sandboxId = event.attributes[LABEL_SANDBOX_ID] ?? runtimeId.replace(/^corral-/, '');
    const state = this.tracked.get(runtimeId) ?? { removing: false, oomKilled: false };
    this.tracked.set(runtimeId, state);
    if (event.action === 'oom') {
      state.oomKilled = true;
      if (this.killOnOom && !state.removing) {
        await this.docker
          .getContainer(event.containerId)
          .kill({ signal: 'SIGKILL' })
          .catch(() => undefined);
      }
      return;
    }
    if (event.action !== 'die' || state.removing) return;
    let oomKilled = state.oomKilled;
    let exitCode = Number(event.attributes.exitCode ?? '-1');
    try {
      const info = await this.docker.getContainer(event.containerId).inspect();
      oomKilled ||= info.State.OOMKilled;
      if (!info.State.Running) exitCode = info.State.ExitCode;
      else return; // Restarted meanwhile; not an exit.
    } catch {
      // Removed already: the event's own attributes are all there is.
    }
    this.publish({ type: 'exited', sandboxId, runtimeId, exitCode, oomKilled });
  }

  private publish(event: RuntimeEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  async close(): Promise<void> {
    if (this.enforcer) {
      const { enforcer } = await this.enforcer.catch(() => ({ enforcer: undefined }));
      const left = await this.list().catch(() => [{}]);
      await enforcer?.close(left.length === 0);
      this.enforcer = undefined;
    }
    this.watcher?.close();
    this.watcher = undefined;
    this.watcherStart = undefined;
    this.listeners.clear();
  }
}

/** GPUs visible on this host: NVIDIA devices, named by `nvidia-smi` when it is installed. */
async function detectGpus(): Promise<RuntimeCapabilities> {
  let devices: string[] = [];
  try {
    devices = readdirSync('/dev').filter((name) => /^nvidia\d+$/.test(name));
  } catch {
    devices = [];
  }
  if (devices.length === 0) return { gpuCount: 0, gpuTypes: [] };
  try {
    const { stdout } = await run('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader']);
    const names = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
    return { gpuCount: names.length, gpuTypes: [...new Set(names)] };
  } catch {
    return { gpuCount: existsSync('/dev/nvidiactl') ? devices.length : 0, gpuTypes: [] };
  }
}

/** An image's size in bytes as the engine reports it (0 when unknown). */
function imageSize(info: Docker.ImageInspectInfo): number {
  return typeof info.Size === 'number' && Number.isFinite(info.Size) && info.Size > 0 ? info.Size : 0;
}

/** Concatenates the payloads of Docker's multiplexed log frames. */
function demuxBuffer(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= raw.length) {
    const type = raw.readUInt8(offset);
    const length = raw.readUInt32BE(offset + 4);
    if (type > 2) return raw; // Not multiplexed (TTY container).
    parts.push(raw.subarray(offset + 8, offset + 8 + length));
    offset += 8 + length;
  }
  return Buffer.concat(parts);
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const json = (error as { json?: { message?: string } }).json;
    return json?.message ?? error.message;
  }
  return String(error);
}


function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

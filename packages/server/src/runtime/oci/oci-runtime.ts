import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, open, readdir, readFile, readlink, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { ExecFileReader } from '../exec-file-reader.js';
import { getFileViaExec, putFileViaExec } from '../exec-files.js';
import { dialViaExec } from '../exec-relay.js';
import { ensureAgentBinary, ensureSeccompCompiler } from '../native-build.js';
import { compileSeccompProfile } from './seccomp-bpf.js';
import type { SeccompProfile } from './seccomp-bpf.js';
import { detectCgroupLayout } from '../cgroups.js';
import type { CgroupLayout } from '../cgroups.js';
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
import { diskShortfall, filesystemSpace, NO_RESERVE } from '../disk-admission.js';
import type { DiskPolicy } from '../disk-admission.js';
import { type CapacityReserve, hostCapacity } from '../host-capacity.js';
import { DEFAULT_SANDBOX_CPU_WEIGHT, setCgroupCpuWeight } from '../cgroup-cpu-weight.js';
import { DiskPool, isMountPoint } from './disk-pool.js';
import { HostLauncher, hostLauncher, useHostLauncher } from './host-launcher.js';
import { DEFAULT_BUILD_DISK_BYTES, DEFAULT_BUILD_USERNS, OciImageBuilder, type OciImageBuildOptions } from '../oci-images/oci-image-builder.js';
import type { ImageBuilder } from '../image-builder.js';
import { ImageStore } from '../oci-images/image-store.js';
import { parseImageRef } from '../registry/image-ref.js';
import type { ImageRef } from '../registry/image-ref.js';
import type { ImageConfig, ImageRecord } from '../oci-images/image-store.js';
import { CheckpointStore } from './checkpoint-store.js';
import { OciCheckpoints } from './oci-checkpoints.js';
import type { MemoryDumper, RestoreSource } from './oci-checkpoints.js';
import { credentialsFor } from '../registry/registry-access-check.js';
import type { RegistryCredentials } from '../registry/registry-client.js';
import { startOciExec } from './oci-exec.js';
import type { ExecTarget } from './oci-exec.js';
import { buildOciConfig, defaultSeccompProfile, mergeEnv } from './oci-spec.js';
import { agentDescriptors, CRIU_CONFIG_FILE, detachNetworkNamespace, dumpConfig, dumpProcesses, errorLines, memoryCheckpointRefusal, probeCriu, restoreConfig, waitForQuietAgent } from './criu-checkpoint.js';
import type { CriuProbe } from './criu-checkpoint.js';
import { runTool } from '../run-tool.js';
import { ensureBridge, NETNS_DIR, NetnsPool } from './sandbox-network.js';
import { EgressChanges } from '../egress/egress-changes.js';
import { EgressEnforcer } from '../egress/egress-enforcer.js';
import type { EgressConnectionLogOptions } from '../egress/egress-enforcer.js';
import type { ConnectionLogSink } from '../egress/egress-log.js';
import { OPEN_EGRESS } from '../egress/egress-policy.js';
import type { BridgeOptions } from './sandbox-network.js';
import { chownToSandboxRoot, mountIdmappedRootfs, resolveUserns } from './userns.js';
import type { UsernsMapping } from './userns.js';
import { idleProgram, templateKey, WarmDemand, warmTemplateOf } from './warm-pool.js';
import type { WarmTemplate } from './warm-pool.js';

/** Scripts larger than this (bytes) are passed through a file instead of argv. */
const LARGE_ARGUMENT = 100 * 1024;
const GiB = 1024 * 1024 * 1024;

/** Default of {@link OciRuntimeOptions.warmPoolMax}. */
export const DEFAULT_WARM_POOL_MAX = 0;

/**
 * Warm sandboxes are started only after this long without a create starting or ending: a start
 * (~50 ms of CPU) next to a create's own work slows that create more than a claim saves it when
 * creates come one after another.
 */
const WARM_QUIET_MS = 250;

/** The most a start check's window grows by while the sandbox waits for a CPU (see start()). */
const START_CHECK_MAX_EXTRA_MS = 3000;
/** How long a memory checkpoint waits for the sandbox's open exec sessions to end. */
const QUIET_TIMEOUT_MS = 10_000;

/** The egress policy of a warm sandbox with a network until it is claimed: nothing reachable. */
const WARM_EGRESS: EgressPolicy = Object.freeze({ allowlist: [], denylist: null }) as EgressPolicy;

/**
 * The cgroup every oci sandbox sits under, in every hierarchy: `<SANDBOXES_CGROUP>/<instance>/<runtime id>`.
 * Shared by the instances on a host; never removed.
 */
export const SANDBOXES_CGROUP = '/corral-oci';

/** Options for {@link OciRuntime}. */
export interface OciRuntimeOptions {
  /** Server instance name; `list()` only sees this instance's sandboxes. */
  instance: string;
  /**
   * Root of the driver's state: `images/` (shared by every instance using this directory) and
   * `instances/<instance>/` (sandboxes, disks, runc state). Conventionally `$CORRAL_DATA_DIR/oci`.
   */
  stateDir: string;
  /** OCI runtime binary (default `runc`). */
  runtimeBinary?: string;
  /**
   * CRIU binaries to try for memory checkpoints, best first (default `criu` on PATH): the first
   * whose `criu check` passes is used. Memory checkpoints also need `runtimeBinary` runc.
   */
  criu?: string[];
  /**
   * The compiled `corral-agent` (PID 1 of every sandbox and its host-side shim). Default: built
   * from `packages/server/agent/corral-agent.c` into `<stateDir>/bin` by `init()`.
   */
  agentBinary?: string;
  /** Directory for the agents' exec sockets (default `/run/corral-oci/<hash of the instance directory>/sock`). */
  socketDir?: string;
  /** cgroup root (default `/sys/fs/cgroup`); v1, hybrid and v2 layouts are detected. */
  cgroupRoot?: string;
  /**
   * How often unused image layers are deleted (default 1 h; 0 never): layers that no stored image
   * and no sandbox of this instance uses, unpacked more than `imageGcMinAgeMs` (default 1 h) ago.
   */
  imageGcIntervalMs?: number;
  imageGcMinAgeMs?: number;
  /** Start host tools through one `corral-agent` on the host instead of forking Node (default true; see host-launcher.ts). */
  hostLauncher?: boolean;
  /** Image store; default one rooted at `<stateDir>/images`. */
  images?: ImageStore;
  /** Limits of Dockerfile builds (`<stateDir>/builds`); defaults: 2 CPUs, 2 GiB, 30 min, no network. */
  imageBuild?: Partial<Omit<OciImageBuildOptions, 'root' | 'images'>>;
  /** Registries (`host[:port]`) the default image store may reach over plain HTTP and at loopback, private or link-local addresses. */
  insecureRegistries?: string[];
  /** Cap on one pull's compressed and on its decompressed layer bytes for the default image store (default 8 GiB). */
  maxImageBytes?: number;
  /** The bridge networked sandboxes join (default `corral-oci0`, `10.213.0.0/16`). */
  bridge?: Partial<BridgeOptions>;
  /** Network namespaces and disks kept ready per kind/size (default 2; 0 disables pooling). */
  poolSize?: number;
  /**
   * Most sandboxes kept started ahead of creates ("warm", see docs/runtime-oci.md), across all
   * templates (image, idle start command, network kind, disk size, workspace); each template gets
   * as many as it had creates in the last `warmPoolWindowMs`, most used first. Default
   * {@link DEFAULT_WARM_POOL_MAX}; 0 disables.
   */
  warmPoolMax?: number;
  /** The window of recent creates that sizes the warm pool (default 5 min). */
  warmPoolWindowMs?: number;
  /** Disk sizes to keep formatted ahead of time from `init()` (default [1 GiB]). */
  warmDiskSizes?: number[];
  /** Kill the whole sandbox when any of its processes is OOM-killed (default true). */
  killOnOom?: boolean;
  /** With a start command, how long `create()` watches it for an immediate exit (default 100 ms). */
  startCheckMs?: number;
  /** How often exits and OOM kills are checked (default 100 ms). */
  pollIntervalMs?: number;
  /** How long `create()` waits for the runtime to start the sandbox (default 30 s). */
  readyTimeoutMs?: number;
  /**
   * Root in a sandbox is this host id range (see userns.ts). Default: `DEFAULT_USERNS_MAPPING` when
   * `init()` finds the host allows it, else none (with a process warning); `null`: none; a mapping
   * the host does not allow fails `init()`.
   */
  userns?: UsernsMapping | null;
  /** Which disks `create()` admits (runtime/disk-admission.ts); default: a disk must only fit in free space. */
  diskPolicy?: DiskPolicy;
  /** What `capacity()` keeps out of the host's CPU and memory (runtime/host-capacity.ts); default none. */
  capacityReserve?: CapacityReserve;
  /**
   * CPU weight (cgroup v2 scale, 1–10000; v1 `cpu.shares` = weight × 1024 / 100) `init()` gives
   * {@link SANDBOXES_CGROUP}, the cgroup every instance's sandboxes sit under, so a host saturated
   * from inside sandboxes still runs the server promptly (runtime/cgroup-cpu-weight.ts). Default
   * {@link DEFAULT_SANDBOX_CPU_WEIGHT}; null leaves the cgroup's weight as it is.
   */
  sandboxCpuWeight?: number | null;
  /** DNS server (`address[:port]`) the egress resolver forwards allowed names to; default the host's first nameserver. */
  egressDnsUpstream?: string;
  /** Addresses allowed names resolve to stay open at least this long, in seconds (default 60). */
  egressTtlFloorSeconds?: number;
  /** Log sandboxes' connection attempts (NFLOG group, and where its reader is compiled); default: DNS only. */
  egressConnectionLog?: EgressConnectionLogOptions;
}

/** What the driver records about a sandbox in `state.json`. */
interface SandboxRecord {
  runtimeId: string;
  sandboxId: string;
  instance: string;
  image: string;
  layers: string[];
  env: string[];
  workingDir: string;
  diskId: string;
  netns: { name: string; ip: string | undefined };
  /** The egress policy enforced (absent in records of older versions: open). */
  egress?: EgressPolicy;
  cgroupsPath: string;
  /** The Unix socket the sandbox's agent accepts exec sessions on. */
  agentSocket: string;
  /** Where the merged overlay is mounted; absent in records of older versions (then `<sandbox dir>/rootfs`). */
  rootfs?: string;
  /** Digest of the image's manifest (absent in records of older versions). */
  imageDigest?: string;
  /** The image's config (checkpoints record it; absent in records of older versions). */
  imageConfig?: ImageConfig;
  /** The checkpoint the sandbox was restored from, when it was. */
  checkpointRef?: string;
  /**
   * A warm sandbox: started ahead of any create, never claimed. Never adopted after a restart (the
   * orphan sweep removes it); a claim rewrites the record without it.
   */
  warm?: boolean;
  createdAt: string;
}

/** In-memory view of a sandbox. */
interface Live {
  record: SandboxRecord;
  exitCode: number | null;
  oomKilled: boolean;
  removing: boolean;
  /** A `remove()` failed part-way: `list()` shows the sandbox (not running) so the caller retries the removal. */
  removeFailed: boolean;
  /** Emit an `exited` event when the exit is noticed (false for exits that happened while the server was down). */
  report: boolean;
  /** Frozen by `pause()` (read from the freezer when a sandbox is adopted after a restart). */
  paused?: boolean;
  /** Set while a memory checkpoint needs the agent without exec sessions: new execs wait for it. */
  quiesced?: Promise<void>;
}

/**
 * Runs sandboxes with an OCI runtime (runc or crun) directly, no daemon: images from
 * {@link ImageStore} (layers stacked by overlayfs), the writable layer on a per-sandbox ext4 loop
 * disk, a pre-made network namespace, cgroup (v1 or v2) limits and Docker's hardening defaults.
 * `corral-agent` is both the sandbox's PID 1, which forks exec'd processes on request over a Unix
 * socket, and the small shim per sandbox that stays the parent of that init, so sandboxes survive
 * a server restart and their exit code and OOM state are recorded on disk. See docs/runtime-oci.md.
 */
export class OciRuntime implements SandboxRuntime {
  readonly name = 'oci';
  readonly images: ImageStore;
  /** Builds Dockerfiles into {@link images} with buildah. */
  readonly imageBuilder: ImageBuilder;
  /** Filesystem checkpoints (`<stateDir>/checkpoints`, layers in {@link images}). */
  readonly checkpoints: OciCheckpoints;
  private readonly instance: string;
  private readonly runtimeBinary: string;
  private readonly criuCandidates: string[];
  /** The CRIU memory checkpoints use (probed by `init()` when the runtime is runc). */
  private criu: CriuProbe | undefined;
  private readonly stateDir: string;
  private agentBinary: string | undefined;
  private readonly socketDir: string;
  /**
   * `/run/corral-oci/<hash>`: what the sandbox's root must reach while the runtime starts it (rootfs
   * mount points under `mnt/`, the agent under `bin/`), outside the data directory so that the
   * data directory stays 0700. Searchable (0711), not listable.
   */
  private readonly runDir: string;
  private readonly mountDir: string;
  /** The copy of `corral-agent` bind-mounted into sandboxes as their init (under `runDir`). */
  private sandboxAgent: string | undefined;
  private readonly cgroupRoot: string | undefined;
  private readonly useLauncher: boolean;
  private readonly imageGcIntervalMs: number;
  private readonly imageGcMinAgeMs: number;
  private gcTimer: NodeJS.Timeout | undefined;
  private cgroups!: CgroupLayout;
  /** The default seccomp profile compiled to BPF once, which each sandbox's agent loads; undefined: the runtime compiles it. */
  private seccompBpf: string | undefined;
  private readonly instanceDir: string;
  private readonly sandboxesDir: string;
  private readonly runcRoot: string;
  private readonly disks: DiskPool;
  private readonly diskPolicy: DiskPolicy;
  private readonly capacityReserve: CapacityReserve;
  /** Bytes of disks admitted by creates that have not got their disk yet. */
  private admittedBytes = 0;
  private readonly netns: NetnsPool;
  private readonly egress: EgressEnforcer;
  /** Policy changes in flight per sandbox, so they apply one after another. */
  private readonly egressChanges = new EgressChanges();
  private readonly killOnOom: boolean;
  private readonly startCheckMs: number;
  private readonly pollIntervalMs: number;
  private readonly readyTimeoutMs: number;
  private readonly warmDiskSizes: number[];
  private readonly cgroupParent: string;
  private readonly sandboxCpuWeight: number | null;
  private readonly live = new Map<string, Live>();
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  /** Creates in flight; the pools refill only while there is at most one (a burst needs the CPU more). */
  private creating = 0;
  /** When a create last started or ended (ms since the epoch): warm sandboxes wait for {@link WARM_QUIET_MS} of quiet. */
  private lastCreateAt = 0;
  private initialized: Promise<void> | undefined;
  /** Sandbox ids whose create is in flight (a second create of one id fails). */
  private readonly startingIds = new Set<string>();
  /** Warm sandboxes per template key, ready to be claimed. Not in `live`: no caller can see or reach them. */
  private readonly warm = new Map<string, SandboxRecord[]>();
  private readonly warmDemand: WarmDemand;
  private warmLoop: Promise<void> | undefined;
  private warmTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly usernsOption: UsernsMapping | null | undefined;
  /** Why new sandboxes get no user namespace, when they get none. */
  private usernsReason: string | undefined;
  /** The mapping new sandboxes get, decided by `init()`. */
  userns: UsernsMapping | null = null;

  constructor(options: OciRuntimeOptions) {
    this.instance = options.instance;
    this.runtimeBinary = options.runtimeBinary ?? 'runc';
    this.criuCandidates = options.criu ?? ['criu'];
    this.stateDir = options.stateDir;
    this.agentBinary = options.agentBinary;
    this.cgroupRoot = options.cgroupRoot;
    this.useLauncher = options.hostLauncher ?? true;
    this.imageGcIntervalMs = options.imageGcIntervalMs ?? 3_600_000;
    this.imageGcMinAgeMs = options.imageGcMinAgeMs ?? 3_600_000;
    this.images = options.images ?? new ImageStore({
        root: join(options.stateDir, 'images'),
        insecureRegistries: options.insecureRegistries ?? [],
        ...(options.maxImageBytes !== undefined ? { maxImageBytes: options.maxImageBytes } : {}),
      });
    this.images.onPull((report) => this.publish({ type: 'image-pulled', ...report }));
    this.checkpoints = new OciCheckpoints(new CheckpointStore(join(options.stateDir, 'checkpoints')), this.images, {
      setFrozen: (path, frozen) => this.cgroups.setFrozen(path, frozen),
    });
    this.imageBuilder = new OciImageBuilder({
      root: join(options.stateDir, 'builds'),
      images: this.images,
      cpus: 2,
      memoryBytes: 2 * 1024 ** 3,
      timeoutMs: 30 * 60_000,
      network: false,
      diskBytes: DEFAULT_BUILD_DISK_BYTES,
      userns: DEFAULT_BUILD_USERNS,
      ...options.imageBuild,
    });
    const safeInstance = options.instance.replace(/[^A-Za-z0-9_.-]/g, '_');
    this.instanceDir = join(options.stateDir, 'instances', safeInstance);
    this.sandboxesDir = join(this.instanceDir, 'sandboxes');
    this.runcRoot = join(this.instanceDir, 'runc');
    this.cgroupParent = `${SANDBOXES_CGROUP}/${safeInstance}`;
    this.sandboxCpuWeight = options.sandboxCpuWeight === undefined ? DEFAULT_SANDBOX_CPU_WEIGHT : options.sandboxCpuWeight;
    // Unix socket paths are limited to 107 bytes: a short directory named by the instance directory.
    this.runDir = join(LAUNCHER_DIR, shortHash(this.instanceDir, 12));
    this.mountDir = join(this.runDir, 'mnt');
    this.socketDir = options.socketDir ?? join(this.runDir, 'sock');
    const poolSize = options.poolSize ?? 2;
    this.disks = new DiskPool(join(this.instanceDir, 'disks'), poolSize);
    this.disks.busy = () => this.creating > 1;
    this.netns = new NetnsPool(
      options.instance,
      { bridgeName: 'corral-oci0', subnet: '10.213.0.0/16', extraBlockedCidrs: [], ...options.bridge },
      poolSize,
    );
    this.netns.busy = () => this.creating > 1;
    this.egress = new EgressEnforcer({
      instance: options.instance,
      bridgeName: this.netns.bridge.bridgeName,
      gateway: this.netns.gatewayAddress,
      ...(options.egressDnsUpstream !== undefined ? { upstream: options.egressDnsUpstream } : {}),
      ...(options.egressTtlFloorSeconds !== undefined ? { ttlFloorSeconds: options.egressTtlFloorSeconds } : {}),
      ...(options.egressConnectionLog !== undefined ? { connectionLog: options.egressConnectionLog } : {}),
    });
    this.killOnOom = options.killOnOom ?? true;
    this.startCheckMs = options.startCheckMs ?? 100;
    this.pollIntervalMs = options.pollIntervalMs ?? 100;
    this.readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
    this.warmDiskSizes = options.warmDiskSizes ?? [GiB];
    this.warmDemand = new WarmDemand(options.warmPoolMax ?? DEFAULT_WARM_POOL_MAX, options.warmPoolWindowMs ?? 300_000);
    this.usernsOption = options.userns;
    this.diskPolicy = options.diskPolicy ?? NO_RESERVE;
    this.capacityReserve = options.capacityReserve ?? { cpuCores: 0, memoryBytes: 0 };
  }

  /**
   * Checks runc answers and that this process is root, adopts the sandboxes recorded on disk,
   * removes leftovers that belong to no recorded sandbox (mounts, disks, namespaces, runc state,
   * cgroups), fills the pools and starts watching for exits.
   */
  init(): Promise<void> {
    this.initialized ??= this.doInit().catch((error: unknown) => {
      this.initialized = undefined;
      throw error;
    });
    return this.initialized;
  }

  private async doInit(): Promise<void> {
    if (process.getuid?.() !== 0) throw new RuntimeError('RUNTIME_ERROR', 'the oci runtime needs root (mounts, cgroups, namespaces)');
    try {
      await runTool(this.runtimeBinary, ['--version']);
    } catch (error) {
      throw new RuntimeError('RUNTIME_ERROR', `${this.runtimeBinary} is not usable (bash scripts/ensure-oci.sh installs it): ${(error as Error).message}`, { cause: error });
    }
    this.agentBinary ??= await ensureAgentBinary(join(this.stateDir, 'bin')).catch((error: unknown) => {
      throw new RuntimeError('RUNTIME_ERROR', (error as Error).message, { cause: error });
    });
    if (this.useLauncher && !hostLauncher()) {
      await mkdir(LAUNCHER_DIR, { recursive: true, mode: 0o700 });
      await removeStaleLaunchers();
      const launcher = new HostLauncher(this.agent(), join(LAUNCHER_DIR, `launcher-${process.pid}.sock`));
      useHostLauncher(launcher);
      await launcher.start();
    }
    this.cgroups = await detectCgroupLayout(this.cgroupRoot);
    if (this.sandboxCpuWeight !== null) {
      await setCgroupCpuWeight(SANDBOXES_CGROUP, this.sandboxCpuWeight, { create: true, ...(this.cgroupRoot !== undefined ? { root: this.cgroupRoot } : {}) }).catch((error: unknown) => {
        throw new RuntimeError('RUNTIME_ERROR', `cannot set the CPU weight of the sandboxes' cgroup ${SANDBOXES_CGROUP} (CORRAL_SANDBOX_CPU_WEIGHT=off leaves it alone): ${(error as Error).message}`, { cause: error });
      });
    }
    // Without libseccomp-dev the profile goes into config.json and the runtime compiles it at every start (~15 ms).
    this.seccompBpf = await ensureSeccompCompiler(join(this.stateDir, 'bin'))
      .then((compiler) => compileSeccompProfile(defaultSeccompProfile() as SeccompProfile, compiler, join(this.stateDir, 'bin')))
      .catch(() => undefined);
    await mkdir(this.sandboxesDir, { recursive: true });
    await mkdir(this.runcRoot, { recursive: true, mode: 0o700 });
    await mkdir(this.socketDir, { recursive: true, mode: 0o700 });
    this.sandboxAgent = await this.prepareRunDir();
    const decision = await resolveUserns(this.usernsOption, join(this.images.root, 'tmp'), this.agent(), [this.mountDir, this.sandboxAgent]);
    this.userns = decision.mapping;
    this.usernsReason = decision.reason;
    this.netns.userns = this.userns;
    this.netns.agentBinary = this.agent();
    if (this.runtimeBinary === 'runc') this.criu = await probeCriu(this.criuCandidates);
    await this.adopt();
    await this.removeOrphans();
    await this.checkpoints.store.removeStaleCaptures();
    await this.startEgress();
    for (const size of this.warmDiskSizes) void this.disks.warm(size);
    void this.netns.warm(false);
    void this.netns.warm(true);
    this.timer = setInterval(() => void this.poll(), this.pollIntervalMs);
    this.timer.unref();
    if (this.warmDemand.max > 0) {
      // Shrinks the warm pool once demand leaves the window, and retries fills that failed.
      this.warmTimer = setInterval(() => this.scheduleWarm(), 5_000);
      this.warmTimer.unref();
    }
    if (this.imageGcIntervalMs > 0) {
      this.gcTimer = setInterval(() => void this.gcImages().catch(() => undefined), this.imageGcIntervalMs);
      this.gcTimer.unref();
    }
  }

  /**
   * Makes `runDir` and its parent searchable but not listable (0711) and copies the agent into
   * `runDir/bin` (0755): a sandbox's root reaches them while the runtime starts it from inside the
   * user namespace. Returns the copy's path.
   */
  private async prepareRunDir(): Promise<string> {
    const bin = join(this.runDir, 'bin');
    await mkdir(this.mountDir, { recursive: true, mode: 0o711 });
    await mkdir(bin, { recursive: true, mode: 0o711 });
    for (const dir of [LAUNCHER_DIR, this.runDir, this.mountDir, bin]) await chmod(dir, 0o711);
    const copy = join(bin, basename(this.agent()));
    if (!existsSync(copy)) {
      const temp = `${copy}.${process.pid}.tmp`;
      await copyFile(this.agent(), temp);
      await chmod(temp, 0o755);
      await rename(temp, copy);
    }
    return copy;
  }

  capabilities(): RuntimeCapabilities {
    const unavailable = memoryCheckpointRefusal({ runtimeBinary: this.runtimeBinary, criu: this.criu });
    return {
      gpuCount: 0,
      gpuTypes: [],
      egressPolicy: true,
      pause: true,
      checkpoint: true,
      memoryCheckpoint: unavailable === undefined,
      ...(unavailable !== undefined ? { memoryCheckpointUnavailable: unavailable } : {}),
    };
  }

  /** User namespace as `init()` decided (with why not), seccomp always (precompiled or by the runtime), a cgroup namespace per sandbox. */
  isolation(): RuntimeIsolation {
    return {
      userNamespace: this.userns !== null,
      seccomp: true,
      cgroupVersion: this.cgroups?.version === 'v2' ? 2 : 1,
      cgroupNamespace: true,
      ...(this.userns === null ? { reason: this.usernsReason ?? 'not initialized' } : {}),
    };
  }

  /** The host's CPU cores and memory minus the configured reserve: what sandboxes may reserve. */
  async capacity(): Promise<SandboxCapacity> {
    return hostCapacity(this.capacityReserve);
  }

  async diskCapacity(): Promise<DiskCapacity | undefined> {
    await this.init();
    await mkdir(join(this.instanceDir, 'disks'), { recursive: true });
    const [space, usedBytes] = await Promise.all([filesystemSpace(join(this.instanceDir, 'disks')), this.disks.usedBytes()]);
    return { ...space, usedBytes, allocatedBytes: this.disks.allocatedBytes() + this.admittedBytes };
  }

  /**
   * Admits a disk of `bytes` under the disk policy, or throws `START_FAILED`. The admitted bytes
   * count as allocated until the returned release is called (once the disk exists, or the create failed).
   */
  private async admitDisk(bytes: number): Promise<() => void> {
    const capacity = await this.diskCapacity();
    // Synchronous from here: concurrent creates see each other's admissions.
    if (capacity) {
      const shortfall = diskShortfall({ ...capacity, allocatedBytes: this.disks.allocatedBytes() + this.admittedBytes }, bytes, this.diskPolicy);
      if (shortfall) throw new RuntimeError('START_FAILED', `not enough disk space: ${shortfall}`);
    }
    this.admittedBytes += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.admittedBytes -= bytes;
    };
  }

  private sandboxDir(runtimeId: string): string {
    return join(this.sandboxesDir, runtimeId);
  }

  /** Where a sandbox's merged overlay is mounted: `<mountDir>/<runtimeId>/rootfs` (older records: in the sandbox directory). */
  private rootfsOf(record: SandboxRecord): string {
    return record.rootfs ?? join(this.sandboxDir(record.runtimeId), 'rootfs');
  }

  private diskMount(record: SandboxRecord): string {
    return join(this.instanceDir, 'disks', record.diskId, 'mnt');
  }

  async create(spec: SandboxSpec): Promise<{ runtimeId: string }> {
    this.creating++;
    this.lastCreateAt = Date.now();
    try {
      return await this.createSandbox(spec);
    } finally {
      this.creating--;
      this.lastCreateAt = Date.now();
    }
  }

  private async createSandbox(spec: SandboxSpec): Promise<{ runtimeId: string }> {
    await this.init();
    if (spec.gpuCount > 0) throw new RuntimeError('UNSUPPORTED', `${spec.gpuCount} GPUs requested, the oci runtime offers none`);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$/.test(spec.sandboxId)) throw new RuntimeError('START_FAILED', `invalid sandbox id ${spec.sandboxId}`);
    const workspace = posix.normalize(spec.workspacePath);
    if (!workspace.startsWith('/') || workspace.split('/').includes('..')) throw new RuntimeError('START_FAILED', `invalid workspace path ${spec.workspacePath}`);
    // A claimed sandbox keeps its warm runtime id: the id is checked here, not by its directory.
    if (this.startingIds.has(spec.sandboxId) || [...this.live.values()].some((l) => l.record.sandboxId === spec.sandboxId)) {
      throw new RuntimeError('START_FAILED', `sandbox corral-${spec.sandboxId} already exists`);
    }
    const auth = pullCredentials(spec);
    const egress = effectiveEgress(spec);
    const template = this.warmTemplate(spec, workspace, !isOffline(egress));
    this.startingIds.add(spec.sandboxId);
    try {
      if (template) {
        this.warmDemand.record(template);
        const claimed = await this.claimWarm(template, spec, auth, egress);
        if (claimed) return claimed;
      }
      const releaseDisk = await this.admitDisk(spec.diskBytes);
      try {
        // A restore stacks the checkpoint's layers (shared, never copied) under a fresh upper.
        const source = spec.checkpoint
          ? await this.checkpoints.restoreSource(spec.checkpoint.ref, spec.checkpoint.memory)
          : { image: await this.images.ensure(spec.image, auth) };
        const how = { runtimeId: `corral-${spec.sandboxId}`, egress, online: !isOffline(egress), warm: false, ...(source.memory ? { memory: source.memory } : {}) };
        const record = await this.startSandbox(spec, workspace, source.image, how, releaseDisk);
        return { runtimeId: record.runtimeId };
      } finally {
        releaseDisk();
      }
    } finally {
      this.startingIds.delete(spec.sandboxId);
      if (template) this.scheduleWarm();
    }
  }

  /** The warm template of a create, when the warm pool is on and the create can be served from it. */
  private warmTemplate(spec: SandboxSpec, workspace: string, online: boolean): WarmTemplate | undefined {
    // Warm sandboxes are started from images only: a restore needs its checkpoint's lower stack.
    if (this.warmDemand.max <= 0 || spec.checkpoint) return undefined;
    let canonical: string;
    try {
      canonical = parseImageRef(spec.image).canonical;
    } catch {
      return undefined;
    }
    return warmTemplateOf(spec, canonical, workspace, online);
  }

  /**
   * Hands a warm sandbox of `template` to this create, or returns undefined (none ready, or none
   * could be claimed: the create takes the normal path). The image is resolved first with the
   * create's own credentials, so a tenant gets an image pulled with credentials only when the
   * registry lets them pull it, and only a warm sandbox of the same image digest.
   */
  private async claimWarm(template: WarmTemplate, spec: SandboxSpec, auth: RegistryCredentials | undefined, egress: EgressPolicy): Promise<{ runtimeId: string } | undefined> {
    const list = this.warm.get(templateKey(template));
    if (!list || list.length === 0) return undefined;
    const image = await this.images.ensure(spec.image, auth);
    // At most two tries: a failure that is not the warm sandbox's own (the firewall, say) must not use up the pool.
    for (let attempt = 0; attempt < 2; attempt++) {
      const record = list.shift();
      if (!record) break;
      try {
        if (record.imageDigest !== image.digest) throw new Error('the image changed since the sandbox was started');
        await this.applyClaim(record, spec, image, egress);
        return { runtimeId: record.runtimeId };
      } catch {
        // Possibly half given to this create: never offered again.
        this.live.delete(record.runtimeId);
        await this.destroyRecord(record).catch(() => undefined);
      }
    }
    return undefined;
  }

  /**
   * Makes a warm sandbox the create's own: its cgroup limits, hostname (set in its UTS namespace
   * from the host: nothing in the sandbox needs a capability for it), /etc/hosts and /etc/hostname,
   * egress policy, then its record (sandbox id, env for every exec) replaces the warm one on disk
   * in one rename. Until that rename a restart removes it as a leftover.
   */
  private async applyClaim(record: SandboxRecord, spec: SandboxSpec, image: ImageRecord, egress: EgressPolicy): Promise<void> {
    const dir = this.sandboxDir(record.runtimeId);
    if (existsSync(join(dir, 'exit'))) throw new Error('the warm sandbox exited');
    const initPid = await readInitPid(dir);
    // The pid must still be this sandbox's init (not a reused pid) before its namespace is entered.
    const cgroup = await readFile(`/proc/${initPid}/cgroup`, 'utf8').catch(() => '');
    if (!(initPid > 0) || !cgroup.includes(`${record.cgroupsPath}\n`)) throw new Error('the warm sandbox is not running');
    const hostname = `sandbox-${spec.sandboxId}`.slice(0, 63);
    const etc = join(this.diskMount(record), 'upper', 'etc');
    await Promise.all([
      this.cgroups.setLimits(record.cgroupsPath, spec),
      runTool('nsenter', [`--target=${initPid}`, '--uts', '--', 'hostname', hostname]),
      writeFile(join(etc, 'hosts'), hostsFile(hostname, record.netns.ip)),
      writeFile(join(etc, 'hostname'), `${hostname}\n`),
      this.egress.apply(record.runtimeId, record.netns.ip, egress),
    ]);
    if (existsSync(join(dir, 'exit'))) throw new Error('the warm sandbox exited');
    const claimed: SandboxRecord = { ...record, sandboxId: spec.sandboxId, env: mergeEnv(image.config.env, spec.env), egress, createdAt: new Date().toISOString() };
    delete claimed.warm;
    await writeRecord(dir, claimed);
    this.live.set(record.runtimeId, { record: claimed, exitCode: null, oomKilled: false, removing: false, removeFailed: false, report: true });
  }

  /**
   * Starts the background fill of the warm pool unless it runs: each step waits until no create
   * has started or ended for {@link WARM_QUIET_MS}, then removes warm sandboxes of templates over
   * their target and starts one for a template under its target, until every template is at its
   * target (see {@link WarmDemand}). A fill that fails ends the round; the next create or the 5 s
   * timer starts another.
   */
  private scheduleWarm(): void {
    if (this.warmDemand.max <= 0 || this.closed || this.warmLoop) return;
    this.warmLoop = this.fillWarmPool()
      .catch(() => undefined)
      .finally(() => {
        this.warmLoop = undefined;
      });
  }

  private async fillWarmPool(): Promise<void> {
    while (!this.closed) {
      const quietFor = Date.now() - this.lastCreateAt;
      if (this.creating > 0 || quietFor < WARM_QUIET_MS) {
        await delay(this.creating > 0 ? 20 : WARM_QUIET_MS - quietFor);
        continue;
      }
      const targets = this.warmDemand.targets();
      for (const [key, list] of this.warm) {
        const keep = targets.get(key)?.count ?? 0;
        while (list.length > keep && !this.closed) {
          const record = list.pop();
          if (record) await this.destroyRecord(record).catch(() => undefined);
        }
        if (list.length === 0) this.warm.delete(key);
      }
      const next = [...targets.entries()].find(([key, t]) => (this.warm.get(key)?.length ?? 0) < t.count);
      if (!next) return;
      await this.fillOne(next[0], next[1].template);
    }
  }

  /** Starts one warm sandbox of `template` (with no env of any tenant, a placeholder hostname and no egress) and pools it. */
  private async fillOne(key: string, template: WarmTemplate): Promise<void> {
    const image = await this.images.get(template.image);
    if (!image) throw new Error(`image ${template.image} is not stored`);
    const releaseDisk = await this.admitDisk(template.diskBytes);
    try {
      const id = `warm-${randomBytes(6).toString('hex')}`;
      const spec: SandboxSpec = {
        sandboxId: id,
        image: template.image,
        startCommand: template.startCommand,
        env: {},
        cpuCores: template.cpuCores,
        memoryBytes: template.memoryBytes,
        diskBytes: template.diskBytes,
        pidsLimit: template.pidsLimit,
        networkAccess: template.online,
        gpuCount: 0,
        gpuType: null,
        workspacePath: template.workspacePath,
      };
      const record = await this.startSandbox(spec, template.workspacePath, image, { runtimeId: `corral-${id}`, egress: WARM_EGRESS, online: template.online, warm: true }, releaseDisk);
      if (this.closed) {
        await this.destroyRecord(record);
        return;
      }
      const list = this.warm.get(key) ?? [];
      list.push(record);
      this.warm.set(key, list);
    } finally {
      releaseDisk();
    }
  }

  /**
   * Starts the egress resolver and firewall on the bridge and re-applies the recorded policy of
   * every adopted sandbox (the firewall rules themselves outlive a restart; the resolver's port
   * does not), then removes rules of sandboxes that are gone.
   */
  private async startEgress(): Promise<void> {
    await ensureBridge(this.netns.bridge);
    await this.egress.start();
    for (const live of this.live.values()) {
      if (live.exitCode !== null || !live.record.netns.name) continue;
      await this.egress.apply(live.record.runtimeId, live.record.netns.ip, live.record.egress ?? OPEN_EGRESS);
    }
    // Leftovers of sandboxes that are gone only cost table entries: a failure here must not stop the driver.
    await this.egress.retainOnlyKnown().catch(() => undefined);
  }

  /**
   * Makes and starts a sandbox: disk and network namespace (from the pools), the /etc files, the
   * rootfs, config.json, egress policy, then the shim. `how.warm`: a warm sandbox, kept out of
   * `live` (the caller pools it) and recorded as warm.
   */
  private async startSandbox(
    spec: SandboxSpec,
    workspace: string,
    image: ImageRecord,
    how: { runtimeId: string; egress: EgressPolicy; online: boolean; warm: boolean; memory?: RestoreSource['memory'] },
    releaseDisk: () => void,
  ): Promise<SandboxRecord> {
    const { runtimeId, egress, online, memory } = how;
    if (memory) {
      const refusal = memoryCheckpointRefusal({ runtimeBinary: this.runtimeBinary, criu: this.criu });
      if (refusal !== undefined) throw new RuntimeError('START_FAILED', `cannot restore a memory checkpoint here: ${refusal}`);
    }
    const dir = this.sandboxDir(runtimeId);
    try {
      await mkdir(dir);
    } catch (error) {
      throw new RuntimeError('START_FAILED', `sandbox ${runtimeId} already exists`, { cause: error });
    }
    const record: SandboxRecord = {
      runtimeId,
      sandboxId: spec.sandboxId,
      instance: this.instance,
      image: image.ref,
      layers: image.layers,
      env: mergeEnv(image.config.env, spec.env),
      workingDir: image.config.workingDir,
      diskId: '',
      netns: { name: '', ip: undefined },
      egress,
      cgroupsPath: `${this.cgroupParent}/${runtimeId}`,
      agentSocket: join(this.socketDir, `${shortHash(runtimeId, 16)}.sock`),
      rootfs: join(this.mountDir, runtimeId, 'rootfs'),
      imageDigest: image.digest,
      imageConfig: image.config,
      ...(spec.checkpoint ? { checkpointRef: spec.checkpoint.ref } : {}),
      ...(how.warm ? { warm: true } : {}),
      createdAt: new Date().toISOString(),
    };
    try {
      // A memory restore gets the network namespace CRIU makes (adopted once it runs), not a pooled one.
      const [disk, ns] = await Promise.all([this.disks.acquire(spec.diskBytes, runtimeId), memory ? undefined : this.netns.acquire(online)]);
      record.diskId = disk.id;
      releaseDisk(); // Counted by the pool from now on.
      if (ns) record.netns = { name: ns.name, ip: ns.ip };
      const hostname = `sandbox-${spec.sandboxId}`.slice(0, 63);
      const upper = join(disk.mountPoint, 'upper');
      const work = join(disk.mountPoint, 'work');
      const rootfs = this.rootfsOf(record);
      // /etc/hosts, resolv.conf and hostname live in the upper layer: on the sandbox's own disk, within its limit.
      const etc = join(upper, 'etc');
      const etcFiles = ['hosts', 'resolv.conf', 'hostname'].map((f) => join(etc, f));
      await Promise.all([
        writeRecord(dir, record),
        mkdir(join(upper, workspace), { recursive: true, mode: 0o755 }),
        mkdir(work),
        mkdir(rootfs, { recursive: true, mode: 0o700 }),
        (async () => {
          await mkdir(etc, { recursive: true, mode: 0o755 });
          const texts = [hostsFile(hostname, ns?.ip), resolvConf(this.netns.gatewayAddress), `${hostname}\n`];
          await Promise.all(etcFiles.map((file, i) => writeFile(file, texts[i] ?? '', { mode: 0o644 })));
        })(),
      ]);
      // A memory restore's user namespace is a new one with the dumped mapping (the one every sandbox shares).
      const userns = this.userns && (memory || ns?.usernsPath !== undefined) ? { mapping: this.userns, path: ns?.usernsPath } : undefined;
      if (userns) {
        // The mount point's directory (0700) is the mapped root's: the runtime reaches the rootfs through it from inside the user namespace.
        await chownToSandboxRoot(userns.mapping, [dirname(rootfs), etc, ...etcFiles], { upper, path: workspace });
        const layers = image.layers.map((l) => this.images.layerDir(l));
        await mountIdmappedRootfs(userns.mapping, { layers, upper, work, rootfs, scratch: join(dir, 'lower') }, this.agent());
      } else {
        // Relative lowerdirs (resolved against the layers directory) keep the mount data short.
        const lower = [...image.layers].reverse().join(':');
        await runToolIn(this.images.layerDir(''), 'mount', ['-t', 'overlay', 'overlay', '-o', `nosuid,nodev,lowerdir=${lower},upperdir=${upper},workdir=${work}`, rootfs]);
      }
      const config = buildOciConfig(spec, {
        rootfs,
        netnsPath: ns?.path,
        cgroupsPath: record.cgroupsPath,
        agentBinary: this.sandboxAgent ?? this.agent(),
        seccompPrecompiled: this.seccompBpf !== undefined,
        imageEnv: image.config.env,
        workingDir: image.config.workingDir,
        hostname,
        userns,
        criuConfigPath: join(dir, CRIU_CONFIG_FILE),
      });
      await writeFile(join(dir, 'config.json'), JSON.stringify(config), { mode: 0o600 });
      if (memory) {
        await writeFile(join(dir, CRIU_CONFIG_FILE), restoreConfig(memory.agent), { mode: 0o600 });
        const live: Live = { record, exitCode: null, oomKilled: false, removing: false, removeFailed: false, report: false };
        this.live.set(runtimeId, live);
        await this.start(record, dir, null, memory.dir);
        await this.plumbRestored(record, hostname, online, egress);
        live.report = true;
        if (live.exitCode !== null) this.emit(live);
        return record;
      }
      // Enforced before the sandbox's first process: no window of open network.
      await this.egress.apply(runtimeId, ns?.ip, egress);
      // Exits are reported once create() succeeded; a start that fails is START_FAILED, not an event.
      if (how.warm) {
        await this.start(record, dir, spec.startCommand);
        return record;
      }
      const live: Live = { record, exitCode: null, oomKilled: false, removing: false, removeFailed: false, report: false };
      this.live.set(runtimeId, live);
      await this.start(record, dir, spec.startCommand);
      live.report = true;
      if (live.exitCode !== null) this.emit(live);
      return record;
    } catch (error) {
      const live = this.live.get(runtimeId);
      if (live) live.removing = true;
      await this.teardown(record).catch(() => undefined);
      this.live.delete(runtimeId);
      if (error instanceof RuntimeError) throw error;
      throw new RuntimeError('START_FAILED', `starting the sandbox failed: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * Gives a sandbox restored with its processes its network: CRIU made its network namespace
   * empty, so it is adopted into the pool's naming with its egress policy applied before any link
   * exists, and connected when `online`. Also its hostname (the restored UTS namespace has the
   * source's) and /etc/hosts. Its record names the namespace before anything can fail after it.
   */
  private async plumbRestored(record: SandboxRecord, hostname: string, online: boolean, egress: EgressPolicy): Promise<void> {
    const dir = this.sandboxDir(record.runtimeId);
    const initPid = await readInitPid(dir);
    const ns = await this.netns.adopt(initPid, online, (ip) => this.egress.apply(record.runtimeId, ip, egress));
    record.netns = { name: ns.name, ip: ns.ip };
    await writeRecord(dir, record);
    await Promise.all([
      runTool('nsenter', [`--target=${initPid}`, '--uts', '--', 'hostname', hostname]),
      writeFile(join(this.diskMount(record), 'upper', 'etc', 'hosts'), hostsFile(hostname, ns.ip)),
    ]);
  }

  /** How many warm sandboxes are ready to be claimed, across templates. */
  warmReady(): number {
    let n = 0;
    for (const list of this.warm.values()) n += list.length;
    return n;
  }

  /** The warm pool's fill (ready sandboxes, and what recent demand asks for); undefined while it is off. */
  warmPool(): { ready: number; target: number } | undefined {
    if (this.warmDemand.max <= 0) return undefined;
    let target = 0;
    for (const entry of this.warmDemand.targets().values()) target += entry.count;
    return { ready: this.warmReady(), target };
  }

  /** True when sandboxes load the precompiled seccomp filter (libseccomp-dev was there to build the compiler). */
  get seccompPrecompiled(): boolean {
    return this.seccompBpf !== undefined;
  }

  private agent(): string {
    if (this.agentBinary === undefined) throw new RuntimeError('RUNTIME_ERROR', 'the oci runtime is not initialized');
    return this.agentBinary;
  }

  /**
   * Starts the shim and waits until the runtime has started the init and, with a start command,
   * that it did not exit at once: for `startCheckMs`, or until an idle command (`tail -f
   * /dev/null`, `sleep infinity`) is seen sleeping.
   */
  private async start(record: SandboxRecord, dir: string, startCommand: string | null, restoreFrom?: string): Promise<void> {
    const pidFile = join(dir, 'init.pid');
    const exitFile = join(dir, 'exit');
    const log = join(this.diskMount(record), 'init.log');
    const criuWork = join(dir, 'criu-restore');
    if (restoreFrom !== undefined) await mkdir(criuWork);
    const criu = this.criu?.ok ? this.criu.path : 'criu';
    const shimArgs = [
        'shim',
        // The exec socket is made in the sandbox's network namespace, where CRIU finds it; a restore's does not exist yet.
        ...(record.netns.name ? [`--netns=${join(NETNS_DIR, record.netns.name)}`] : []),
        ...(restoreFrom !== undefined ? [`--restore=${restoreFrom}`, `--criu=${criu}`, `--work=${criuWork}`, '--empty-netns'] : []),
        this.runtimeBinary,
        this.runcRoot,
        dir,
        pidFile,
        record.runtimeId,
        log,
        this.cgroups.oomFile(record.cgroupsPath),
        exitFile,
        record.agentSocket,
        ...(this.seccompBpf ? [this.seccompBpf] : []),
      ];
    if (!(await hostLauncher()?.launch(this.agent(), shimArgs))) {
      const child = spawn(this.agent(), shimArgs, { detached: true, stdio: 'ignore', cwd: '/' });
      child.unref();
    }
    const deadline = Date.now() + this.readyTimeoutMs;
    const failed = async (): Promise<never> => {
      const exit = await readExitFile(exitFile);
      if (restoreFrom !== undefined) {
        const lines = errorLines(await readFile(join(criuWork, 'restore.log'), 'utf8').catch(() => ''));
        const output = lines.length > 0 ? lines.slice(0, 4).join(' / ') : (await this.logs(record.runtimeId, 2048).catch(() => '')).trim();
        throw new RuntimeError('START_FAILED', `restoring the checkpoint's processes failed (CRIU)${output ? `: ${output}` : ''}`);
      }
      const output = (await this.logs(record.runtimeId, 2048).catch(() => '')).trim();
      throw new RuntimeError(
        'START_FAILED',
        `the sandbox exited with code ${exit?.code ?? 'unknown'} before it was ready${output ? `: ${output}` : ''}`,
      );
    };
    for (let i = 0; ; i++) {
      if (existsSync(exitFile)) await failed();
      if (existsSync(pidFile)) break;
      if (Date.now() > deadline) throw new RuntimeError('START_FAILED', `${this.runtimeBinary} did not start the sandbox within ${this.readyTimeoutMs} ms`);
      await delay(i < 50 ? 1 : 5);
    }
    if (startCommand === null) return;
    // An idle start command is settled once its process sleeps: it cannot fail "at once" any more.
    const idle = idleProgram(startCommand);
    const initPid = await readInitPid(dir).catch(() => 0);
    // For any other command the window is startCheckMs of the sandbox's own time: time its
    // processes spend waiting for a CPU during it (a loaded host, the sandboxes' low CPU weight)
    // extends it, up to START_CHECK_MAX_EXTRA_MS (sampled every 20 ms). Time they spend asleep
    // (`sleep 0.2; exit 4`) does not. An idle command's window is never extended: it would only
    // hold a burst's readiness back.
    // The window starts once the start command runs: a child of the agent that has executed its
    // program (its executable is no longer the agent's). On a loaded host the agent may take longer
    // than the window to fork it, and loading the program may wait on the disk; a command that has
    // not run yet cannot have failed. A command that ran and ended in between has ended the sandbox
    // (the exit file).
    if (initPid > 0) {
      const agentExe = await readlink(`/proc/${initPid}/exe`).catch(() => undefined);
      while (!(await startCommandExecuted(initPid, agentExe)) && Date.now() < deadline) {
        if (existsSync(exitFile)) await failed();
        await delay(2);
      }
    }
    const started = Date.now();
    const measureStarvation = idle === undefined && initPid > 0;
    const waitedBefore = measureStarvation ? await runQueueWaitMs(initPid) : 0;
    let starved = 0;
    let sampled = started;
    while (Date.now() < started + this.startCheckMs + starved) {
      if (existsSync(exitFile)) await failed();
      if (idle !== undefined && initPid && (await childIdles(initPid, idle))) return;
      await delay(idle === undefined ? 5 : 1);
      if (measureStarvation && Date.now() - sampled >= 20) {
        sampled = Date.now();
        starved = Math.max(starved, Math.min(START_CHECK_MAX_EXTRA_MS, (await runQueueWaitMs(initPid)) - waitedBefore));
      }
    }
    if (existsSync(exitFile)) await failed();
  }

  private execTarget(live: Live): ExecTarget {
    const record = live.record;
    if (!record.agentSocket) throw new RuntimeError('RUNTIME_ERROR', `sandbox ${record.runtimeId} was started without an exec agent; recreate it`);
    return {
      socketPath: record.agentSocket,
      env: record.env,
      workingDir: record.workingDir,
    };
  }

  private running(runtimeId: string): Live {
    const live = this.live.get(runtimeId);
    if (!live || live.removing || live.removeFailed) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`);
    if (live.exitCode !== null || existsSync(join(this.sandboxDir(runtimeId), 'exit'))) throw new RuntimeError('NOT_FOUND', `sandbox ${runtimeId} is not running`);
    return live;
  }

  async exec(runtimeId: string, request: ExecRequest): Promise<ExecProcess> {
    let live = this.running(runtimeId);
    // A memory checkpoint is dumping the agent: it must hold no exec connection meanwhile.
    while (live.quiesced) {
      await live.quiesced;
      live = this.running(runtimeId);
    }
    // A frozen agent would accept the connection and never answer.
    if (live.paused) throw new RuntimeError('PAUSED', `sandbox ${runtimeId} is paused`);
    try {
      const target = this.execTarget(live);
      return await startOciExec(target, await this.spillLargeScript(target, request));
    } catch (error) {
      if (error instanceof RuntimeError) throw error;
      throw new RuntimeError('RUNTIME_ERROR', `exec failed: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * Freezes every process of the sandbox through its cgroup's freezer (v1 `freezer.state`, v2
   * `cgroup.freeze`) and resolves once the kernel reports it frozen. Idempotent.
   */
  async pause(runtimeId: string): Promise<void> {
    const live = this.running(runtimeId);
    if (live.paused) return;
    live.paused = true; // execs are refused from now on, not left hanging on a freezing agent
    try {
      await this.cgroups.setFrozen(live.record.cgroupsPath, true);
    } catch (error) {
      await this.cgroups.setFrozen(live.record.cgroupsPath, false).catch(() => undefined);
      live.paused = false;
      throw new RuntimeError('RUNTIME_ERROR', `could not pause sandbox ${runtimeId}: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Thaws a paused sandbox and resolves once the kernel reports it thawed. Idempotent. */
  async resume(runtimeId: string): Promise<void> {
    const live = this.running(runtimeId);
    try {
      // After a checkpoint's frozen pass of this sandbox, never during it.
      await this.checkpoints.exclusive(runtimeId, () => this.cgroups.setFrozen(live.record.cgroupsPath, false));
    } catch (error) {
      throw new RuntimeError('RUNTIME_ERROR', `could not resume sandbox ${runtimeId}: ${(error as Error).message}`, { cause: error });
    }
    live.paused = false;
  }

  /**
   * Captures the sandbox's filesystem as an immutable checkpoint (see oci-checkpoints.ts): its
   * processes are frozen only while its writable layer is copied (a paused sandbox stays paused).
   */
  async checkpoint(runtimeId: string, request: CheckpointRequest): Promise<RuntimeCheckpoint> {
    const live = this.running(runtimeId);
    const record = live.record;
    const imageConfig = record.imageConfig ?? (await this.images.get(record.image))?.config;
    if (!imageConfig) throw new RuntimeError('CHECKPOINT_FAILED', `sandbox ${runtimeId} predates checkpoints and its image ${record.image} is gone`);
    let memory: MemoryDumper | undefined;
    if (request.memory) {
      const refusal = memoryCheckpointRefusal({ runtimeBinary: this.runtimeBinary, criu: this.criu });
      if (refusal !== undefined) throw new RuntimeError('CHECKPOINT_FAILED', `cannot checkpoint the sandbox's processes: ${refusal}`);
      memory = this.memoryDumper(live);
    }
    return this.checkpoints.capture(
      {
        runtimeId,
        upper: join(this.diskMount(record), 'upper'),
        cgroupsPath: record.cgroupsPath,
        layers: record.layers,
        image: record.image,
        imageDigest: record.imageDigest ?? '',
        imageConfig,
        paused: () => live.paused === true,
        removing: () => live.removing,
        ...(memory ? { memory } : {}),
      },
      request,
      this.userns,
    );
  }

  /**
   * Dumps a sandbox's processes with `runc checkpoint` (CRIU) for a memory checkpoint: new execs
   * wait while open ones finish (up to {@link QUIET_TIMEOUT_MS}), then, within the capture's
   * freeze, CRIU dumps with the sandbox's `criu.conf` ({@link dumpConfig}) and the image's network
   * namespace is made an ordinary one (restores get a new one).
   */
  private memoryDumper(live: Live): MemoryDumper {
    const { runtimeId } = live.record;
    const dir = this.sandboxDir(runtimeId);
    return {
      quiesce: async () => {
        let open: () => void = () => undefined;
        live.quiesced = new Promise<void>((resolve) => (open = resolve));
        const release = (): void => {
          live.quiesced = undefined;
          open();
        };
        const stillOpen = await waitForQuietAgent(await readInitPid(dir), QUIET_TIMEOUT_MS).catch((error: unknown) => {
          release();
          throw error;
        });
        if (stillOpen > 0) {
          release();
          throw new RuntimeError(
            'CHECKPOINT_FAILED',
            `${stillOpen} command(s) kept running in the sandbox for ${QUIET_TIMEOUT_MS / 1000} s, and a memory checkpoint needs none attached ` +
              '(CRIU cannot dump their connections; commands started in the background are fine): try again once they finish',
          );
        }
        return release;
      },
      dump: async (imageDir) => {
        if (!this.criu?.ok) throw new RuntimeError('CHECKPOINT_FAILED', 'no working CRIU');
        const agent = await agentDescriptors(await readInitPid(dir));
        await writeFile(join(dir, CRIU_CONFIG_FILE), dumpConfig(), { mode: 0o600 });
        const work = await mkdtemp(join(dir, 'criu-dump-'));
        try {
          await dumpProcesses({ criuPath: this.criu.path, runtimeRoot: this.runcRoot, containerId: runtimeId, imageDir, workDir: work });
        } finally {
          await rm(work, { recursive: true, force: true });
        }
        await detachNetworkNamespace(imageDir);
        return agent;
      },
    };
  }

  /** Forgets a checkpoint; its layers stay while running sandboxes or other checkpoints use them. */
  async deleteCheckpoint(ref: string): Promise<void> {
    await this.checkpoints.delete(ref);
  }

  /**
   * Linux refuses a single argument over 128 KiB: a larger `sh -c` script is written to a file in
   * /tmp (as the exec's user) by a first exec, and sourced from an open descriptor after deletion.
   */
  private async spillLargeScript(target: ExecTarget, request: ExecRequest): Promise<ExecRequest> {
    const [shell, flag, script, ...rest] = request.argv;
    if (shell === undefined || flag !== '-c' || script === undefined || Buffer.byteLength(script) <= LARGE_ARGUMENT) return request;
    if (!/(^|\/)(sh|bash|dash|ash|zsh)$/.test(shell)) return request;
    const file = `/tmp/.corral-script-${randomUUID()}`;
    const writer = await startOciExec(target, {
      argv: ['/bin/sh', '-c', 'umask 077 && cat > "$1"', 'corral-spill', file],
      user: request.user,
      stdin: true,
    });
    writer.stdout.resume();
    writer.stderr.resume();
    writer.stdin?.end(script);
    const { exitCode } = await writer.wait();
    if (exitCode !== 0) return request;
    return { ...request, argv: [shell, '-c', `exec 9<'${file}' && rm -f '${file}' && . /dev/fd/9`, ...rest] };
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

  /** A relay process exec'd inside the sandbox to its own 127.0.0.1:`port` (works with and without network). */
  dial(runtimeId: string, port: number): Promise<Duplex> {
    return dialViaExec(this, runtimeId, port);
  }

  async logs(runtimeId: string, maxBytes: number): Promise<string> {
    const live = this.live.get(runtimeId);
    if (!live) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`);
    const path = join(this.diskMount(live.record), 'init.log');
    let handle;
    try {
      handle = await open(path, 'r');
    } catch {
      return '';
    }
    try {
      const { size } = await handle.stat();
      const length = Math.min(size, Math.max(0, maxBytes));
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, size - length);
      return buffer.toString('utf8');
    } finally {
      await handle.close();
    }
  }

  async stats(runtimeId: string): Promise<RuntimeStats> {
    const live = this.live.get(runtimeId);
    if (!live) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`);
    return this.cgroups.stats(live.record.cgroupsPath);
  }

  async inspect(runtimeId: string): Promise<RuntimeSandboxState | undefined> {
    const live = this.live.get(runtimeId);
    if (!live || live.removing) return undefined;
    await this.refresh(live);
    return toState(live);
  }

  async list(): Promise<RuntimeSandboxState[]> {
    const out: RuntimeSandboxState[] = [];
    for (const live of this.live.values()) {
      if (live.removing) continue;
      await this.refresh(live);
      out.push(toState(live));
    }
    return out;
  }

  /**
   * Reads the exit file of a sandbox not yet known to have exited; whoever notices the exit first
   * (the poller, `inspect()`, `list()`) emits the `exited` event.
   */
  private async refresh(live: Live): Promise<boolean> {
    if (live.exitCode !== null) return false;
    const exit = await readExitFile(join(this.sandboxDir(live.record.runtimeId), 'exit'));
    if (!exit || live.exitCode !== null) return false;
    live.exitCode = exit.code;
    live.oomKilled ||= exit.oomKills > 0 || existsSync(join(this.sandboxDir(live.record.runtimeId), 'oom'));
    if (live.report && !live.removing) this.emit(live);
    return true;
  }

  async remove(runtimeId: string): Promise<void> {
    const live = this.live.get(runtimeId);
    if (!live) return; // Not this instance's.
    live.removing = true;
    // Removal thaws the sandbox before it kills it: not while a checkpoint's frozen pass reads its files.
    await this.checkpoints.exclusive(runtimeId, () => Promise.resolve());
    try {
      await this.destroyRecord(live.record);
    } catch (error) {
      // Half torn down: keep it listed (as ended) so the reconciler sees it and retries.
      live.removing = false;
      live.removeFailed = true;
      throw error;
    }
    this.live.delete(runtimeId);
    this.checkpoints.forget(runtimeId);
  }

  /**
   * Thaws the sandbox (a frozen task cannot die), kills every process of it, waits up to 2 s for
   * its shim to record the exit, then tears it down.
   */
  private async destroyRecord(record: SandboxRecord): Promise<void> {
    if (await this.cgroups.isFrozen(record.cgroupsPath)) await this.cgroups.setFrozen(record.cgroupsPath, false).catch(() => undefined);
    await this.killAll(record);
    const exitFile = join(this.sandboxDir(record.runtimeId), 'exit');
    for (let i = 0; i < 200 && !existsSync(exitFile); i++) {
      if (i % 20 === 19) await this.killAll(record);
      await delay(10);
    }
    await this.teardown(record);
  }

  /** SIGKILLs every process of the sandbox (cgroup.kill on cgroup v2, else `<runtime> kill --all`). */
  private async killAll(record: SandboxRecord): Promise<void> {
    if (await this.cgroups.killAll(record.cgroupsPath)) return;
    await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'kill', '--all', record.runtimeId, 'KILL']).catch(() => undefined);
  }

  /** Deletes the runc container, unmounts the rootfs, frees disk and namespace, removes the directory. Idempotent. */
  private async teardown(record: SandboxRecord): Promise<void> {
    await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'delete', '--force', record.runtimeId], { background: true }).catch(() => undefined);
    const dir = this.sandboxDir(record.runtimeId);
    const rootfs = this.rootfsOf(record);
    for (let attempt = 0; attempt < 20 && (await isMountPoint(rootfs)); attempt++) {
      await runTool('umount', [rootfs], { background: true }).catch(() => delay(50));
    }
    if (await isMountPoint(rootfs)) await runTool('umount', ['-l', rootfs]).catch(() => undefined);
    await this.egress.remove(record.runtimeId);
    if (record.netns.name) await this.netns.destroy(record.netns);
    if (record.diskId) await this.disks.destroy(record.diskId);
    await this.cgroups.remove(record.cgroupsPath);
    if (record.agentSocket) await rm(record.agentSocket, { force: true });
    if (!(await isMountPoint(rootfs))) await rm(join(this.mountDir, record.runtimeId), { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }

  /**
   * Replaces a running sandbox's egress policy: an empty allow list takes its network away (veth
   * and route deleted), any other policy gives it back when it had none; then the resolver and the
   * firewall follow the new policy in one transaction. Changes to one sandbox apply in order.
   */
  async setEgressPolicy(runtimeId: string, policy: EgressPolicy): Promise<void> {
    await this.egressChanges.apply(runtimeId, policy, (next) => this.changeEgress(runtimeId, next));
  }

  private async changeEgress(runtimeId: string, policy: EgressPolicy): Promise<void> {
    const live = this.running(runtimeId);
    const record = live.record;
    if (!record.netns.name) throw new RuntimeError('NOT_FOUND', `sandbox ${runtimeId} has no network namespace`);
    const online = !isOffline(policy);
    if (!online && record.netns.ip !== undefined) {
      await this.egress.apply(runtimeId, undefined, policy);
      await this.netns.disconnect(record.netns);
      record.netns = { name: record.netns.name, ip: undefined };
    } else if (online && record.netns.ip === undefined) {
      const { ip } = await this.netns.connect(record.netns);
      record.netns = { name: record.netns.name, ip };
    }
    await this.egress.apply(runtimeId, record.netns.ip, policy);
    record.egress = policy;
    await writeRecord(this.sandboxDir(runtimeId), record);
  }

  /**
   * Where the connection logger (reading the NFLOG group of `egressConnectionLog`) delivers the packets the
   * egress firewall logged; they appear in {@link egressLog}.
   */
  get egressConnectionLog(): ConnectionLogSink {
    return this.egress;
  }

  /** The sandbox's recent DNS answers and connection attempts, oldest first. */
  async egressLog(runtimeId: string, limit: number): Promise<EgressLogEntry[]> {
    if (!this.live.has(runtimeId)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`);
    return this.egress.log(runtimeId, limit);
  }

  onEvent(listener: (event: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One round of exit and OOM checks over this instance's running sandboxes. */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (const live of [...this.live.values()]) {
        if (live.removing || live.exitCode !== null) continue;
        if (await this.refresh(live)) continue;
        if (!live.oomKilled) {
          if ((await this.cgroups.oomKills(live.record.cgroupsPath)) > 0) {
            live.oomKilled = true;
            await writeFile(join(this.sandboxDir(live.record.runtimeId), 'oom'), '').catch(() => undefined);
            if (this.killOnOom) await this.killAll(live.record);
          }
        }
      }
    } finally {
      this.polling = false;
    }
  }

  private emit(live: Live): void {
    this.publish({
      type: 'exited',
      sandboxId: live.record.sandboxId,
      runtimeId: live.record.runtimeId,
      exitCode: live.exitCode ?? -1,
      oomKilled: live.oomKilled,
    });
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

  /** Loads the sandboxes recorded on disk; one whose runc process is gone and left no exit file is marked exited (255). */
  private async adopt(): Promise<void> {
    for (const runtimeId of await readdir(this.sandboxesDir)) {
      if (this.live.has(runtimeId)) continue;
      const dir = this.sandboxDir(runtimeId);
      const record = await readRecord<SandboxRecord>(dir);
      if (!record) continue; // An interrupted create: removeOrphans() cleans it.
      // A warm sandbox of an earlier run is never handed out: removeOrphans() removes it like a leftover.
      if (record.warm) continue;
      if (!existsSync(join(dir, 'init.pid'))) continue;
      const live: Live = { record, exitCode: null, oomKilled: existsSync(join(dir, 'oom')), removing: false, removeFailed: false, report: false };
      if (!(await this.refresh(live))) {
        const status = await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'state', runtimeId]).then(
          (r) => (JSON.parse(r.stdout) as { status?: string }).status,
          () => undefined,
        );
        if (status === 'running' || status === 'created' || status === 'paused') {
          live.report = true;
          live.paused = await this.cgroups.isFrozen(record.cgroupsPath);
        }
        else {
          await writeFile(join(dir, 'exit'), '255 0\n');
          await this.refresh(live);
        }
      }
      this.live.set(runtimeId, live);
    }
  }

  /** Removes what this instance left behind that belongs to no recorded sandbox. */
  private async removeOrphans(): Promise<void> {
    for (const runtimeId of await readdir(this.sandboxesDir)) {
      if (this.live.has(runtimeId)) continue;
      const dir = this.sandboxDir(runtimeId);
      const record = await readRecord<SandboxRecord>(dir);
      if (record) await this.teardown(record).catch(() => undefined);
      else {
        await runTool('umount', ['-l', join(dir, 'rootfs')]).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      }
    }
    for (const runtimeId of await readdir(this.mountDir).catch(() => [] as string[])) {
      if (this.live.has(runtimeId)) continue;
      const rootfs = join(this.mountDir, runtimeId, 'rootfs');
      if (await isMountPoint(rootfs)) await runTool('umount', ['-l', rootfs]).catch(() => undefined);
      if (!(await isMountPoint(rootfs))) await rm(join(this.mountDir, runtimeId), { recursive: true, force: true });
    }
    const owned = new Set([...this.live.values()].map((l) => l.record.diskId));
    for (const disk of await this.disks.scan()) {
      if (!owned.has(disk.id) && !this.disks.isPooled(disk.id)) await this.disks.destroy(disk.id).catch(() => undefined);
    }
    await this.netns.removeOrphans(new Set([...this.live.values()].map((l) => l.record.netns.name)));
    for (const id of await readdir(this.runcRoot).catch(() => [] as string[])) {
      if (!this.live.has(id)) await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'delete', '--force', id]).catch(() => undefined);
    }
    for (const name of await this.cgroups.childNames(this.cgroupParent)) {
      if (!this.live.has(name)) await this.cgroups.remove(`${this.cgroupParent}/${name}`);
    }
    const sockets = new Set([...this.live.values()].map((l) => l.record.agentSocket));
    for (const name of await readdir(this.socketDir).catch(() => [] as string[])) {
      if (!sockets.has(join(this.socketDir, name))) await rm(join(this.socketDir, name), { force: true });
    }
  }

  /**
   * Deletes cached layers that no stored image, no stored checkpoint and no sandbox uses: this
   * instance's (running, warm) and those recorded by every other instance on the state directory
   * (their `state.json`), so a replica's GC never takes the lower layers of another's restores.
   */
  async gcImages(): Promise<string[]> {
    return this.images.gc([...(await this.layersInUse()), ...(await this.checkpoints.store.layersInUse())], this.imageGcMinAgeMs);
  }

  /**
   * Deletes the layers this driver's captures stored that nothing uses any more (no image, no
   * checkpoint, no sandbox of any instance), at once rather than at the hourly GC: for tests and
   * benchmarks that clean up after themselves. Returns the removed digests.
   */
  async pruneCheckpointLayers(): Promise<string[]> {
    return this.checkpoints.pruneLayers(await this.layersInUse());
  }

  /** Layers of this instance's sandboxes (running and warm) and of every sandbox recorded under the state directory. */
  private async layersInUse(): Promise<Set<string>> {
    const layers = new Set([...this.live.values()].map((l) => l.record).concat([...this.warm.values()].flat()).flatMap((r) => r.layers));
    const instances = join(this.stateDir, 'instances');
    for (const instance of await readdir(instances).catch(() => [] as string[])) {
      const sandboxes = join(instances, instance, 'sandboxes');
      for (const id of await readdir(sandboxes).catch(() => [] as string[])) {
        const record = await readRecord<Partial<SandboxRecord>>(join(sandboxes, id));
        for (const layer of record?.layers ?? []) layers.add(layer);
      }
    }
    return layers;
  }

  /**
   * Stops watching, removes the warm sandboxes and empties the pools (ready namespaces and disks
   * are deleted). Sandboxes keep running.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.gcTimer) clearInterval(this.gcTimer);
    if (this.warmTimer) clearInterval(this.warmTimer);
    this.timer = undefined;
    this.gcTimer = undefined;
    this.warmTimer = undefined;
    this.listeners.clear();
    await this.warmLoop;
    const warm = [...this.warm.values()].flat();
    this.warm.clear();
    await Promise.all(warm.map((record) => this.destroyRecord(record).catch(() => undefined)));
    await Promise.all([this.disks.close(), this.netns.close(), this.egress.close(this.live.size === 0)]);
  }
}

/** The policy a spec asks for: `networkAccess: false` is an empty allow list; no policy is open. */
function effectiveEgress(spec: SandboxSpec): EgressPolicy {
  if (!spec.networkAccess) return { allowlist: [], denylist: null };
  return spec.egress ?? OPEN_EGRESS;
}

/** An empty allow list: the sandbox gets no network at all. */
function isOffline(policy: EgressPolicy): boolean {
  return policy.allowlist !== null && policy.allowlist.length === 0;
}

function toState(live: Live): RuntimeSandboxState {
  return {
    sandboxId: live.record.sandboxId,
    runtimeId: live.record.runtimeId,
    running: live.exitCode === null && !live.removeFailed,
    exitCode: live.exitCode ?? (live.removeFailed ? 137 : null),
    oomKilled: live.oomKilled,
    paused: live.paused === true,
  };
}

async function readExitFile(path: string): Promise<{ code: number; oomKills: number } | undefined> {
  try {
    const [code, oom] = (await readFile(path, 'utf8')).trim().split(/\s+/).map(Number);
    return { code: Number.isInteger(code) ? (code as number) : 255, oomKills: Number.isInteger(oom) ? (oom as number) : 0 };
  } catch {
    return undefined;
  }
}

function hostsFile(hostname: string, ip: string | undefined): string {
  return [
    `127.0.0.1\tlocalhost${ip === undefined ? ` ${hostname}` : ''}`,
    '::1\tlocalhost ip6-localhost ip6-loopback',
    ...(ip !== undefined ? [`${ip}\t${hostname}`] : []),
    '',
  ].join('\n');
}

/**
 * Every sandbox resolves names through the egress resolver on its gateway (the firewall redirects
 * its port 53 there), with or without a policy. `single-request`: glibc asks A and AAAA one after
 * the other, not at once from one socket (two simultaneous first packets of one UDP flow through
 * DNAT can race in conntrack and one is dropped: a 5 s stall). `timeout:2 attempts:3`: an answer
 * lost or late (the resolver shares the server's event loop) costs 2 s, not glibc's default 5.
 */
function resolvConf(gateway: string): string {
  return `nameserver ${gateway}\noptions ndots:0 single-request timeout:2 attempts:3\n`;
}

function runToolIn(cwd: string, command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} failed (exit ${code}): ${stderr.trim()}`))));
  });
}

/** Where host launchers (one per server process) listen. */
const LAUNCHER_DIR = '/run/corral-oci';

/** Deletes the sockets of launchers whose server process is gone. */
async function removeStaleLaunchers(): Promise<void> {
  for (const name of await readdir(LAUNCHER_DIR).catch(() => [] as string[])) {
    const pid = /^launcher-(\d+)\.sock(\.\d+)?$/.exec(name)?.[1];
    if (pid !== undefined && !existsSync(`/proc/${pid}`)) await rm(join(LAUNCHER_DIR, name), { force: true });
  }
}

/** The first `length` hex digits of the SHA-256 of `text`. */
function shortHash(text: string, length: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}


/** The credentials of a spec for its image's registry (refused when made for another registry). */
function pullCredentials(spec: SandboxSpec): RegistryCredentials | undefined {
  if (!spec.registryAuth) return undefined;
  let ref: ImageRef;
  try {
    ref = parseImageRef(spec.image);
  } catch (error) {
    throw new RuntimeError('IMAGE_PULL_FAILED', `cannot pull ${spec.image}: ${(error as Error).message}`, { cause: error });
  }
  return credentialsFor(ref, spec.registryAuth);
}

/** Whether a child of the sandbox's init (the start command) is `program`, asleep. */
/** The pids of `initPid`'s children (none when it is gone). */
/**
 * Writes a sandbox's `state.json` whole: to a file of its own, then renamed into place, so a
 * reader (another instance's image GC, a restart) never sees it half written.
 */
async function writeRecord(dir: string, record: SandboxRecord): Promise<void> {
  const temp = join(dir, `state.json.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  await writeFile(temp, JSON.stringify(record, null, 2), { mode: 0o600 });
  await rename(temp, join(dir, 'state.json'));
}

/** A sandbox's `state.json`; undefined when it is missing or not whole JSON (a crash before records were written whole). */
async function readRecord<T>(dir: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** The pid of a sandbox's init, from the pid file its shim renamed into the sandbox's directory `dir`. */
async function readInitPid(dir: string): Promise<number> {
  return Number((await readFile(join(dir, 'init.pid'), 'utf8')).trim());
}

/**
 * Whether a child of the sandbox's init (the agent, whose `/proc/<pid>/exe` is `agentExe`) has
 * executed its own program: its executable differs from the agent's (a forked child that has not
 * exec'd yet shares it).
 */
async function startCommandExecuted(initPid: number, agentExe: string | undefined): Promise<boolean> {
  for (const pid of await childPids(initPid)) {
    const exe = await readlink(`/proc/${pid}/exe`).catch(() => undefined);
    if (exe !== undefined && exe !== agentExe) return true;
  }
  return false;
}

async function childPids(initPid: number): Promise<string[]> {
  return (await readFile(`/proc/${initPid}/task/${initPid}/children`, 'utf8').catch(() => '')).trim().split(' ').filter(Boolean);
}

/**
 * How long (ms) the sandbox's init and its children have waited for a CPU while runnable, from
 * `/proc/<pid>/schedstat` (0 where the kernel does not keep it).
 */
async function runQueueWaitMs(initPid: number): Promise<number> {
  let total = 0;
  for (const pid of [String(initPid), ...(await childPids(initPid))]) {
    const waited = Number((await readFile(`/proc/${pid}/schedstat`, 'utf8').catch(() => '')).split(' ')[1]);
    if (Number.isFinite(waited)) total += waited / 1e6;
  }
  return total;
}

async function childIdles(initPid: number, program: string): Promise<boolean> {
  for (const pid of await childPids(initPid)) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (stat.startsWith(`${pid} (${program}) S `)) return true;
  }
  return false;
}

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { getFileViaExec, putFileViaExec } from '../exec-files.js';
import { RuntimeError } from '../runtime.js';
import type {
  ExecProcess,
  ExecRequest,
  RuntimeCapabilities,
  RuntimeEvent,
  RuntimeSandboxState,
  RuntimeStats,
  SandboxRuntime,
  SandboxSpec,
} from '../runtime.js';
import { DiskPool, isMountPoint } from './disk-pool.js';
import { ImageStore } from './image-store.js';
import { startOciExec } from './oci-exec.js';
import type { ExecTarget } from './oci-exec.js';
import { buildOciConfig, mergeEnv } from './oci-spec.js';
import { runTool } from './run-tool.js';
import { NetnsPool } from './sandbox-network.js';
import type { BridgeOptions } from './sandbox-network.js';
import { chownToSandboxRoot, mountIdmappedRootfs, resolveUserns } from './userns.js';
import type { UsernsMapping } from './userns.js';

/** Scripts larger than this (bytes) are passed through a file instead of argv. */
const LARGE_ARGUMENT = 100 * 1024;
const GiB = 1024 * 1024 * 1024;
const CGROUP_ROOT = '/sys/fs/cgroup';

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
  /** Static init bind-mounted as PID 1 (default: `tini-static` from $PATH; null: the shell is PID 1). */
  initBinary?: string | null;
  /** Image store; default one rooted at `<stateDir>/images`. */
  images?: ImageStore;
  /** Registries reached over plain HTTP besides loopback ones. */
  insecureRegistries?: string[];
  /** The bridge networked sandboxes join (default `corral-oci0`, `10.213.0.0/16`). */
  bridge?: Partial<BridgeOptions>;
  /** Network namespaces and disks kept ready per kind/size (default 2; 0 disables pooling). */
  poolSize?: number;
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
  cgroupsPath: string;
  createdAt: string;
}

/** In-memory view of a sandbox. */
interface Live {
  record: SandboxRecord;
  exitCode: number | null;
  oomKilled: boolean;
  removing: boolean;
  /** Emit an `exited` event when the exit is noticed (false for exits that happened while the server was down). */
  report: boolean;
}

/**
 * The shim that stays the parent of a sandbox's init (perl-base is in every Debian system), like
 * containerd's shim: it makes itself a child subreaper, sends its stdio to the log file, runs
 * `<runtime> create` (the init, once the runtime's own processes exit, is re-parented to the shim)
 * and `<runtime> start`, renames the pid file into place to say the sandbox runs, then waits for
 * the init. When the init exits it records `<exit status> <oom_kill count>` in the exit file (the
 * container is not deleted, so its memory cgroup and OOM counter are still there to read).
 * Arguments: prctl syscall number, runtime, state root, bundle, pid file, container id, log file,
 * memory cgroup directory, exit file.
 */
const SHIM_SCRIPT = `
use strict;
my ($nr, $rt, $root, $bundle, $pidfile, $id, $log, $memcg, $exitfile) = @ARGV;
syscall($nr, 36, 1, 0, 0, 0) == 0 or die "corral shim: PR_SET_CHILD_SUBREAPER: $!\n";
open(STDIN, '<', '/dev/null');
open(STDOUT, '>>', $log) or die "corral shim: $log: $!\n";
open(STDERR, '>&', \\*STDOUT);
sub code { my $s = shift; return $s == -1 ? 127 : ($s & 127) ? 128 + ($s & 127) : ($s >> 8); }
sub record {
  my $code = shift; my $oom = 0;
  if (open(my $fh, '<', "$memcg/memory.oom_control")) { while (<$fh>) { $oom = $1 if /^oom_kill ([0-9]+)/; } close $fh; }
  open(my $out, '>', "$exitfile.tmp") or exit 1;
  print $out "$code $oom\n"; close $out;
  rename("$exitfile.tmp", $exitfile); exit 0;
}
my $rc = system($rt, '--root', $root, 'create', '--bundle', $bundle, '--pid-file', "$pidfile.tmp", $id);
record(code($rc)) if $rc != 0;
open(my $fh, '<', "$pidfile.tmp") or record(255);
my $init = <$fh>; close $fh;
record(255) unless defined $init && $init =~ /^([0-9]+)/;
$init = $1;
$rc = system($rt, '--root', $root, 'start', $id);
if ($rc != 0) { kill 'KILL', $init; }
else { rename("$pidfile.tmp", $pidfile); }
while (1) {
  my $pid = waitpid(-1, 0);
  last if $pid <= 0;
  record(code($?)) if $pid == $init;
}
record(255);
`;

/** prctl(2)'s syscall number for the shim. */
const PRCTL_SYSCALL: Partial<Record<string, number>> = { x64: 157, arm64: 167 };

/**
 * Runs sandboxes with an OCI runtime (runc or crun) directly, no daemon: images from
 * {@link ImageStore} (layers stacked by overlayfs), the writable layer on a per-sandbox ext4 loop
 * disk, a pre-made network namespace, cgroup v1 limits, Docker's hardening defaults, and
 * `<runtime> exec` for processes. A small shim per sandbox (a perl subreaper) stays the parent of
 * its init, so sandboxes survive a server restart and their exit code and OOM state are recorded
 * on disk. See docs/runtime-oci.md.
 */
export class OciRuntime implements SandboxRuntime {
  readonly name = 'oci';
  readonly images: ImageStore;
  private readonly instance: string;
  private readonly runtimeBinary: string;
  private readonly initBinary: string | undefined;
  private readonly instanceDir: string;
  private readonly sandboxesDir: string;
  private readonly runcRoot: string;
  private readonly disks: DiskPool;
  private readonly netns: NetnsPool;
  private readonly killOnOom: boolean;
  private readonly startCheckMs: number;
  private readonly pollIntervalMs: number;
  private readonly readyTimeoutMs: number;
  private readonly warmDiskSizes: number[];
  private readonly cgroupParent: string;
  private readonly live = new Map<string, Live>();
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private initialized: Promise<void> | undefined;
  private readonly usernsOption: UsernsMapping | null | undefined;
  /** The mapping new sandboxes get, decided by `init()`. */
  userns: UsernsMapping | null = null;

  constructor(options: OciRuntimeOptions) {
    this.instance = options.instance;
    this.runtimeBinary = options.runtimeBinary ?? 'runc';
    this.initBinary = options.initBinary === null ? undefined : (options.initBinary ?? findOnPath('tini-static'));
    this.images = options.images ?? new ImageStore({ root: join(options.stateDir, 'images'), insecureRegistries: options.insecureRegistries ?? [] });
    const safeInstance = options.instance.replace(/[^A-Za-z0-9_.-]/g, '_');
    this.instanceDir = join(options.stateDir, 'instances', safeInstance);
    this.sandboxesDir = join(this.instanceDir, 'sandboxes');
    this.runcRoot = join(this.instanceDir, 'runc');
    this.cgroupParent = `/corral-oci/${safeInstance}`;
    const poolSize = options.poolSize ?? 2;
    this.disks = new DiskPool(join(this.instanceDir, 'disks'), poolSize);
    this.netns = new NetnsPool(
      options.instance,
      { bridgeName: 'corral-oci0', subnet: '10.213.0.0/16', extraBlockedCidrs: [], ...options.bridge },
      poolSize,
    );
    this.killOnOom = options.killOnOom ?? true;
    this.startCheckMs = options.startCheckMs ?? 100;
    this.pollIntervalMs = options.pollIntervalMs ?? 100;
    this.readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
    this.warmDiskSizes = options.warmDiskSizes ?? [GiB];
    this.usernsOption = options.userns;
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
    await mkdir(this.sandboxesDir, { recursive: true });
    await mkdir(this.runcRoot, { recursive: true, mode: 0o700 });
    this.userns = await resolveUserns(this.usernsOption, join(this.images.root, 'tmp'));
    this.netns.userns = this.userns;
    await this.adopt();
    await this.removeOrphans();
    for (const size of this.warmDiskSizes) void this.disks.warm(size);
    void this.netns.warm(false);
    this.timer = setInterval(() => void this.poll(), this.pollIntervalMs);
    this.timer.unref();
  }

  capabilities(): RuntimeCapabilities {
    return { gpuCount: 0, gpuTypes: [] };
  }

  private sandboxDir(runtimeId: string): string {
    return join(this.sandboxesDir, runtimeId);
  }

  private diskMount(record: SandboxRecord): string {
    return join(this.instanceDir, 'disks', record.diskId, 'mnt');
  }

  async create(spec: SandboxSpec): Promise<{ runtimeId: string }> {
    await this.init();
    if (spec.gpuCount > 0) throw new RuntimeError('UNSUPPORTED', `${spec.gpuCount} GPUs requested, the oci runtime offers none`);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$/.test(spec.sandboxId)) throw new RuntimeError('START_FAILED', `invalid sandbox id ${spec.sandboxId}`);
    const workspace = posix.normalize(spec.workspacePath);
    if (!workspace.startsWith('/') || workspace.split('/').includes('..')) throw new RuntimeError('START_FAILED', `invalid workspace path ${spec.workspacePath}`);
    const auth = spec.registryAuth ? { username: spec.registryAuth.username, password: spec.registryAuth.password } : undefined;
    const image = await this.images.ensure(spec.image, auth);
    const runtimeId = `corral-${spec.sandboxId}`;
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
      cgroupsPath: `${this.cgroupParent}/${runtimeId}`,
      createdAt: new Date().toISOString(),
    };
    try {
      const [disk, ns] = await Promise.all([this.disks.acquire(spec.diskBytes, runtimeId), this.netns.acquire(spec.networkAccess)]);
      record.diskId = disk.id;
      record.netns = { name: ns.name, ip: ns.ip };
      const hostname = `sandbox-${spec.sandboxId}`.slice(0, 63);
      const upper = join(disk.mountPoint, 'upper');
      const work = join(disk.mountPoint, 'work');
      const rootfs = join(dir, 'rootfs');
      await Promise.all([
        writeFile(join(dir, 'state.json'), JSON.stringify(record, null, 2), { mode: 0o600 }),
        mkdir(join(upper, workspace), { recursive: true, mode: 0o755 }),
        mkdir(work),
        mkdir(rootfs),
        writeFile(join(dir, 'hosts'), hostsFile(hostname, ns.ip)),
        writeFile(join(dir, 'resolv.conf'), await resolvConf()),
        writeFile(join(dir, 'hostname'), `${hostname}\n`),
      ]);
      const userns = this.userns && ns.usernsPath !== undefined ? { mapping: this.userns, path: ns.usernsPath } : undefined;
      if (userns) {
        await chownToSandboxRoot(userns.mapping, [join(dir, 'hosts'), join(dir, 'resolv.conf'), join(dir, 'hostname')], { upper, path: workspace });
        const layers = image.layers.map((l) => this.images.layerDir(l));
        await mountIdmappedRootfs(userns.mapping, { layers, upper, work, rootfs, scratch: join(dir, 'lower') });
      } else {
        // Relative lowerdirs (resolved against the layers directory) keep the mount data short.
        const lower = [...image.layers].reverse().join(':');
        await runToolIn(this.images.layerDir(''), 'mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, rootfs]);
      }
      const config = buildOciConfig(spec, {
        rootfs,
        netnsPath: ns.path,
        cgroupsPath: record.cgroupsPath,
        hostsFile: join(dir, 'hosts'),
        resolvConfFile: join(dir, 'resolv.conf'),
        hostnameFile: join(dir, 'hostname'),
        initBinary: this.initBinary,
        imageEnv: image.config.env,
        workingDir: image.config.workingDir,
        hostname,
        userns,
      });
      await writeFile(join(dir, 'config.json'), JSON.stringify(config), { mode: 0o600 });
      // Exits are reported once create() succeeded; a start that fails is START_FAILED, not an event.
      const live: Live = { record, exitCode: null, oomKilled: false, removing: false, report: false };
      this.live.set(runtimeId, live);
      await this.start(record, dir, spec.startCommand !== null);
      live.report = true;
      if (live.exitCode !== null) this.emit(live);
      return { runtimeId };
    } catch (error) {
      const live = this.live.get(runtimeId);
      if (live) live.removing = true;
      await this.teardown(record).catch(() => undefined);
      this.live.delete(runtimeId);
      if (error instanceof RuntimeError) throw error;
      throw new RuntimeError('START_FAILED', `starting the sandbox failed: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Starts the shim and waits until runc has started the init (and, with a start command, that it did not exit at once). */
  private async start(record: SandboxRecord, dir: string, watchStart: boolean): Promise<void> {
    const pidFile = join(dir, 'init.pid');
    const exitFile = join(dir, 'exit');
    const log = join(this.diskMount(record), 'init.log');
    const prctl = PRCTL_SYSCALL[process.arch];
    if (prctl === undefined) throw new RuntimeError('UNSUPPORTED', `the oci runtime does not support ${process.arch}`);
    const child = spawn(
      'perl',
      ['-e', SHIM_SCRIPT, String(prctl), this.runtimeBinary, this.runcRoot, dir, pidFile, record.runtimeId, log, join(CGROUP_ROOT, 'memory', record.cgroupsPath), exitFile],
      { detached: true, stdio: 'ignore', cwd: '/' },
    );
    child.unref();
    const deadline = Date.now() + this.readyTimeoutMs;
    const failed = async (): Promise<never> => {
      const exit = await readExitFile(exitFile);
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
    if (!watchStart) return;
    const until = Date.now() + this.startCheckMs;
    while (Date.now() < until) {
      if (existsSync(exitFile)) await failed();
      await delay(5);
    }
    if (existsSync(exitFile)) await failed();
  }

  private execTarget(live: Live): ExecTarget {
    const record = live.record;
    return {
      runtimeBinary: this.runtimeBinary,
      runcRoot: this.runcRoot,
      containerId: record.runtimeId,
      rootfs: join(this.sandboxDir(record.runtimeId), 'rootfs'),
      scratchDir: this.sandboxDir(record.runtimeId),
      env: record.env,
      workingDir: record.workingDir,
      listPids: () => this.listPids(record),
    };
  }

  private async listPids(record: SandboxRecord): Promise<number[]> {
    const text = await readFile(join(CGROUP_ROOT, 'pids', record.cgroupsPath, 'cgroup.procs'), 'utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0);
  }

  private running(runtimeId: string): Live {
    const live = this.live.get(runtimeId);
    if (!live || live.removing) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`);
    if (live.exitCode !== null || existsSync(join(this.sandboxDir(runtimeId), 'exit'))) throw new RuntimeError('NOT_FOUND', `sandbox ${runtimeId} is not running`);
    return live;
  }

  async exec(runtimeId: string, request: ExecRequest): Promise<ExecProcess> {
    const live = this.running(runtimeId);
    try {
      const target = this.execTarget(live);
      return await startOciExec(target, await this.spillLargeScript(target, request));
    } catch (error) {
      if (error instanceof RuntimeError) throw error;
      throw new RuntimeError('RUNTIME_ERROR', `exec failed: ${(error as Error).message}`, { cause: error });
    }
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
    const cg = live.record.cgroupsPath;
    const read = (controller: string, file: string): Promise<string> => readFile(join(CGROUP_ROOT, controller, cg, file), 'utf8').catch(() => '0');
    const [usage, limit, memStat, cpu, pids] = await Promise.all([
      read('memory', 'memory.usage_in_bytes'),
      read('memory', 'memory.limit_in_bytes'),
      read('memory', 'memory.stat'),
      read('cpuacct', 'cpuacct.usage'),
      read('pids', 'pids.current'),
    ]);
    const inactive = Number(/^total_inactive_file (\d+)/m.exec(memStat)?.[1] ?? 0);
    return {
      memoryBytes: Math.max(0, Number(usage) - inactive),
      memoryLimitBytes: Number(limit),
      cpuUsageNanos: Number(cpu),
      pids: Number(pids),
    };
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
    await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'kill', '--all', runtimeId, 'KILL']).catch(() => undefined);
    const exitFile = join(this.sandboxDir(runtimeId), 'exit');
    for (let i = 0; i < 200 && !existsSync(exitFile); i++) {
      if (i % 20 === 19) await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'kill', '--all', runtimeId, 'KILL']).catch(() => undefined);
      await delay(10);
    }
    await this.teardown(live.record);
    this.live.delete(runtimeId);
  }

  /** Deletes the runc container, unmounts the rootfs, frees disk and namespace, removes the directory. Idempotent. */
  private async teardown(record: SandboxRecord): Promise<void> {
    await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'delete', '--force', record.runtimeId]).catch(() => undefined);
    const dir = this.sandboxDir(record.runtimeId);
    const rootfs = join(dir, 'rootfs');
    for (let attempt = 0; attempt < 20 && (await isMountPoint(rootfs)); attempt++) {
      await runTool('umount', [rootfs]).catch(() => delay(50));
    }
    if (await isMountPoint(rootfs)) await runTool('umount', ['-l', rootfs]).catch(() => undefined);
    if (record.netns.name) await this.netns.destroy(record.netns);
    if (record.diskId) await this.disks.destroy(record.diskId);
    await removeCgroups(record.cgroupsPath);
    await rm(dir, { recursive: true, force: true });
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
          const control = await readFile(join(CGROUP_ROOT, 'memory', live.record.cgroupsPath, 'memory.oom_control'), 'utf8').catch(() => '');
          if (Number(/^oom_kill (\d+)/m.exec(control)?.[1] ?? 0) > 0) {
            live.oomKilled = true;
            await writeFile(join(this.sandboxDir(live.record.runtimeId), 'oom'), '').catch(() => undefined);
            if (this.killOnOom) {
              await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'kill', '--all', live.record.runtimeId, 'KILL']).catch(() => undefined);
            }
          }
        }
      }
    } finally {
      this.polling = false;
    }
  }

  private emit(live: Live): void {
    const event: RuntimeEvent = {
      type: 'exited',
      sandboxId: live.record.sandboxId,
      runtimeId: live.record.runtimeId,
      exitCode: live.exitCode ?? -1,
      oomKilled: live.oomKilled,
    };
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
      let record: SandboxRecord;
      try {
        record = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as SandboxRecord;
      } catch {
        continue; // An interrupted create: removeOrphans() cleans it.
      }
      if (!existsSync(join(dir, 'init.pid'))) continue;
      const live: Live = { record, exitCode: null, oomKilled: existsSync(join(dir, 'oom')), removing: false, report: false };
      if (!(await this.refresh(live))) {
        const status = await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'state', runtimeId]).then(
          (r) => (JSON.parse(r.stdout) as { status?: string }).status,
          () => undefined,
        );
        if (status === 'running' || status === 'created' || status === 'paused') live.report = true;
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
      const record = await readFile(join(dir, 'state.json'), 'utf8').then((t) => JSON.parse(t) as SandboxRecord, () => undefined);
      if (record) await this.teardown(record).catch(() => undefined);
      else {
        await runTool('umount', ['-l', join(dir, 'rootfs')]).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      }
    }
    const owned = new Set([...this.live.values()].map((l) => l.record.diskId));
    for (const disk of await this.disks.scan()) {
      if (!owned.has(disk.id) && !this.disks.isPooled(disk.id)) await this.disks.destroy(disk.id).catch(() => undefined);
    }
    await this.netns.removeOrphans(new Set([...this.live.values()].map((l) => l.record.netns.name)));
    for (const id of await readdir(this.runcRoot).catch(() => [] as string[])) {
      if (!this.live.has(id)) await runTool(this.runtimeBinary, ['--root', this.runcRoot, 'delete', '--force', id]).catch(() => undefined);
    }
    for (const controller of await readdir(CGROUP_ROOT).catch(() => [] as string[])) {
      const parent = join(CGROUP_ROOT, controller, this.cgroupParent);
      for (const child of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
        if (child.isDirectory() && !this.live.has(child.name)) await rmdir(join(parent, child.name)).catch(() => undefined);
      }
    }
  }

  /**
   * Deletes cached layers that no stored image and no sandbox of this instance uses. Other
   * instances sharing the image store protect their layers only through image records.
   */
  gcImages(): Promise<string[]> {
    return this.images.gc([...this.live.values()].flatMap((l) => l.record.layers));
  }

  /** Stops watching, empties the pools (ready namespaces and disks are deleted). Sandboxes keep running. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
    await Promise.all([this.disks.close(), this.netns.close()]);
  }
}

function toState(live: Live): RuntimeSandboxState {
  return {
    sandboxId: live.record.sandboxId,
    runtimeId: live.record.runtimeId,
    running: live.exitCode === null,
    exitCode: live.exitCode,
    oomKilled: live.oomKilled,
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

/**
 * Removes a sandbox's cgroup directory from every hierarchy, and the instance's parent directory
 * when it has no other sandbox left.
 */
async function removeCgroups(cgroupsPath: string): Promise<void> {
  const parent = posix.dirname(cgroupsPath);
  for (const controller of await readdir(CGROUP_ROOT).catch(() => [] as string[])) {
    await rmdir(join(CGROUP_ROOT, controller, cgroupsPath)).catch(() => undefined);
    await rmdir(join(CGROUP_ROOT, controller, parent)).catch(() => undefined);
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

let resolvCache: { at: number; text: Promise<string> } | undefined;

/** {@link readResolvConf}, re-read at most every 10 s. */
function resolvConf(): Promise<string> {
  if (!resolvCache || Date.now() - resolvCache.at > 10_000) resolvCache = { at: Date.now(), text: readResolvConf() };
  return resolvCache.text;
}

/** The host's nameservers minus loopback ones; Google's public resolvers when none remain (as Docker does). */
async function readResolvConf(): Promise<string> {
  const host = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const servers = [...host.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1] ?? '').filter((s) => s && !/^(127\.|::1$)/.test(s));
  const search = /^\s*search\s+(.+)$/m.exec(host)?.[1];
  const lines = (servers.length > 0 ? servers : ['8.8.8.8', '8.8.4.4']).map((s) => `nameserver ${s}`);
  if (search) lines.push(`search ${search.trim()}`);
  return `${lines.join('\n')}\n`;
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

function findOnPath(tool: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin', '/bin'])) {
    if (dir && existsSync(join(dir, tool))) return join(dir, tool);
  }
  return undefined;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}


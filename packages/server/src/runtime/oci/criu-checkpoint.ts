/**
 * Memory checkpoints of oci sandboxes with CRIU, through `runc checkpoint` (`dumpProcesses`) and
 * `runc restore` (run by the restoring shim, `corral-agent shim --restore`; `restoreProcesses`
 * for tests). The oci driver wires these in (oci-runtime.ts, oci-checkpoints.ts).
 *
 * What holds on this project's machines (kernel 6.18, runc 1.1.5, see docs/runtime-oci.md,
 * "Memory checkpoints (CRIU)"):
 * - Debian 12's criu 3.17 cannot run at all (`criu check`: "vdso: Unexpected rt vDSO area bounds",
 *   kernels from 6.13 split the vvar mapping); `scripts/ensure-criu.sh` builds Debian 13's 4.1.1
 *   with two patches (inherit-fd from runc's configuration file; TCP sockets on Linux 6.16+).
 * - crun 1.8.1 is built without CRIU: only runc can checkpoint.
 * - Dumps use `--leave-running`: the sandbox runs on afterwards.
 * - Corral's user namespace owns the sandbox's network namespace. CRIU recreates the user
 *   namespace from the image and then cannot join a network namespace that belongs to another user
 *   namespace (`Can't setns 16/net`). So `detachNetworkNamespace` makes the image's network
 *   namespace an ordinary one, and a restore with `--empty-ns network` into a bundle whose user and
 *   network namespaces have no path gets a new user namespace with the dumped mapping (the one
 *   every sandbox shares) owning a new, empty network namespace: the pair's shape. The driver then
 *   plumbs it (sandbox-network.ts, `NetnsPool.adopt`).
 * - Corral's agent (the init) is dumpable because:
 *   - the shim makes its listening exec socket inside the sandbox's network namespace, where
 *     CRIU's sock_diag finds it. A restore is handed the restoring shim's socket instead
 *     (`inherit-fd`, {@link restoreConfig}; CRIU needs scripts/criu/inherit-fd-once.patch for it),
 *     made before the restored network namespace existed; the shim then hands the agent one made
 *     inside it (the agent's F_LISTENER frame), so a restored sandbox can be dumped again;
 *   - its stdout/stderr is a pipe the shim copies into the log file (a file outside the sandbox's
 *     mounts could not be dumped); runc hands the restore its own stdout, the restoring shim's
 *     pipe, instead;
 *   - no exec connection is open during the dump ({@link waitForQuietAgent}): their peers are the
 *     server's.
 */
import { execFile, spawn } from 'node:child_process';
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';
import { RuntimeError } from '../runtime.js';

const execFileAsync = promisify(execFile);

/** The CRIU configuration file in each sandbox's directory (its config.json names it to runc). */
export const CRIU_CONFIG_FILE = 'criu.conf';

/**
 * Where to look for CRIU in a cache directory: the binary `scripts/ensure-criu.sh` builds (CRIU
 * 4.1.1 with the patches in scripts/criu/) and links as `<cache>/criu/current`.
 */
export function criuCandidates(cacheDir: string): string[] {
  return [join(cacheDir, 'criu', 'current')];
}

/** A CRIU that passed `criu check` here, or why none did. */
export type CriuProbe = { ok: true; path: string; version: string } | { ok: false; reason: string };

/** The first candidate whose `criu check` passes; otherwise what each said. */
export async function probeCriu(candidates: string[]): Promise<CriuProbe> {
  const failures: string[] = [];
  for (const path of candidates) {
    try {
      await execFileAsync(path, ['check'], { timeout: 30_000 });
      const { stdout } = await execFileAsync(path, ['--version'], { timeout: 10_000 });
      const version = /Version:\s*(\S+)/.exec(stdout)?.[1] ?? 'unknown';
      return { ok: true, path, version };
    } catch (error) {
      failures.push(`${path}: ${criuFailureText(error)}`);
    }
  }
  return { ok: false, reason: `no working CRIU (run scripts/ensure-criu.sh): ${failures.join('; ')}` };
}

function criuFailureText(error: unknown): string {
  const e = error as { code?: unknown; stderr?: unknown; message?: string };
  if (e.code === 'ENOENT') return 'not installed';
  const lines = typeof e.stderr === 'string' ? errorLines(e.stderr) : [];
  return lines.length > 0 ? lines.slice(0, 3).join(' / ') : (e.message ?? String(error));
}

/** What the driver knows about a sandbox before a memory checkpoint. */
export interface MemoryCheckpointFacts {
  /** The OCI runtime binary's name (`runc`, `crun`). */
  runtimeBinary: string;
  /** The CRIU probe's result (undefined: not probed, as on a driver that never checkpoints memory). */
  criu: CriuProbe | undefined;
}

/**
 * Why a sandbox's processes cannot be checkpointed here, or undefined when nothing known stands
 * in the way (CRIU may still refuse: `dumpProcesses` says what it said).
 */
export function memoryCheckpointRefusal(facts: MemoryCheckpointFacts): string | undefined {
  if (facts.runtimeBinary !== 'runc') {
    return `${facts.runtimeBinary} is built without CRIU support here; memory checkpoints need CORRAL_OCI_RUNTIME=runc (the filesystem checkpoint works)`;
  }
  if (!facts.criu?.ok) return facts.criu?.reason ?? 'CRIU was not probed';
  return undefined;
}

/** The descriptors of a sandbox's init (Corral's agent) that CRIU must be told about. */
export interface AgentDescriptors {
  /** Inode of the listening exec socket (fd 3): the restoring shim's socket stands in for it. */
  socketInode: number;
}

/** Reads {@link AgentDescriptors} from `/proc/<pid>`. */
export async function agentDescriptors(pid: number): Promise<AgentDescriptors> {
  const link = await readlink(`/proc/${pid}/fd/${AGENT_SOCKET_FD}`).catch(() => '');
  const socketInode = Number(/^socket:\[(\d+)\]$/.exec(link)?.[1]);
  if (!Number.isSafeInteger(socketInode)) throw new RuntimeError('CHECKPOINT_FAILED', `the sandbox's init holds no exec socket (fd 3: ${link || 'none'})`);
  return { socketInode };
}

/** The init's descriptor that holds the agent's listening exec socket. */
const AGENT_SOCKET_FD = 3;
/** Where the restoring shim keeps the new exec socket for CRIU: runc's stdin (RESTORE_SOCKET_FD in corral-agent.c). */
export const RESTORE_SOCKET_FD = 0;

/**
 * The CRIU configuration for a dump: open TCP connections are dumped (repair mode, the sandbox's
 * network namespace locked meanwhile) rather than refused; restores close them
 * ({@link restoreConfig}). Nothing else needs saying: the exec socket is found in the sandbox's
 * network namespace and the output is a pipe (runc lists it for the restore).
 */
export function dumpConfig(): string {
  return 'tcp-established\n';
}

/**
 * The CRIU configuration for a restore: the restoring shim's exec socket (runc's stdin, which runc
 * passes on to CRIU) stands in for the dumped one, and TCP connections are restored closed. (The dumped output pipe is replaced by runc's
 * stdout, the restoring shim's log file, through runc's own descriptors.json.)
 */
export function restoreConfig(agent: AgentDescriptors): string {
  // A copy has a new address and none of its peers: its TCP connections come back closed.
  return `inherit-fd fd[${RESTORE_SOCKET_FD}]:socket:[${agent.socketInode}]\ntcp-close\n`;
}

/**
 * Waits until the init holds no socket but its listening exec socket: every exec connection is
 * closed (CRIU cannot dump them, their other ends being the server's). Returns how many were
 * still open at the deadline (0: quiet).
 */
export async function waitForQuietAgent(pid: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let open = 0;
    for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      if (Number(fd) === AGENT_SOCKET_FD) continue;
      if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')).startsWith('socket:')) open++;
    }
    if (open === 0 || Date.now() >= deadline) return open;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** NetnsEntry.ext_key (criu/images/netdev.proto): the key of an external network namespace. */
const NETNS_EXT_KEY_FIELD = 8;

/**
 * Makes the image's network namespace an ordinary (not external) one, so that a restore with
 * `emptyNetwork` creates a new, empty network namespace inside the restored user namespace
 * instead of joining a pre-made one (which a restored user namespace cannot: see above). runc
 * marks every network namespace joined by path as external on dump. Returns how many entries it
 * changed.
 */
export async function detachNetworkNamespace(imageDir: string): Promise<number> {
  let changed = 0;
  for (const name of (await readdir(imageDir)).filter((n) => /^netns-\d+\.img$/.test(n))) {
    const path = join(imageDir, name);
    const image = await readFile(path);
    // An image: two magic u32s, then entries of a little-endian u32 size and the message.
    const parts: Uint8Array[] = [image.subarray(0, 8)];
    let offset = 8;
    while (offset + 4 <= image.length) {
      const size = image.readUInt32LE(offset);
      const message = image.subarray(offset + 4, offset + 4 + size);
      if (message.length !== size) throw new RuntimeError('CHECKPOINT_FAILED', `${name}: truncated entry`);
      const reader = new BinaryReader(message);
      const writer = new BinaryWriter();
      while (reader.pos < reader.len) {
        const [fieldNo, wireType] = reader.tag();
        const data = reader.skip(wireType, fieldNo);
        if (fieldNo === NETNS_EXT_KEY_FIELD) changed++;
        else writer.tag(fieldNo, wireType).raw(data);
      }
      const out = writer.finish();
      const header = Buffer.alloc(4);
      header.writeUInt32LE(out.length);
      parts.push(header, out);
      offset += 4 + size;
    }
    await writeFile(path, Buffer.concat(parts));
  }
  return changed;
}

/** A runc container to dump. */
export interface DumpRequest {
  criuPath: string;
  /** runc's `--root` (the driver's state directory for runc). */
  runtimeRoot: string;
  containerId: string;
  /** Empty directory that receives the CRIU image. */
  imageDir: string;
  /** Directory for CRIU's log (`dump.log`) and work files. */
  workDir: string;
}

/**
 * Dumps the container's processes into `imageDir` and leaves them running (frozen only while the
 * dump runs). Throws `RuntimeError('CHECKPOINT_FAILED')` with CRIU's own error lines.
 */
export async function dumpProcesses(request: DumpRequest): Promise<void> {
  const args = ['--root', request.runtimeRoot, '--criu', request.criuPath, 'checkpoint', '--leave-running'];
  args.push('--image-path', request.imageDir, '--work-path', request.workDir, request.containerId);
  await runRunc(args, join(request.workDir, 'dump.log'), 'dump');
}

/** A freshly prepared container to restore processes into. */
export interface RestoreRequest {
  criuPath: string;
  runtimeRoot: string;
  /** The new container's id (never the dumped one's). */
  containerId: string;
  /** Its bundle: `config.json` with its own rootfs, cgroup and network namespace path. */
  bundleDir: string;
  /** A CRIU image `dumpProcesses` wrote; it is only read, so one image restores many times. */
  imageDir: string;
  /** Directory for CRIU's log (`restore.log`); one per restore. */
  workDir: string;
  /** File descriptor the restored processes' stdout and stderr (pipes at dump time) become. */
  outputFd: number;
  /**
   * Restore the network namespace empty (`--empty-ns network`): with `detachNetworkNamespace`
   * and a bundle whose network namespace has no path, CRIU creates it; the caller plumbs it.
   */
  emptyNetwork?: boolean;
}

/**
 * Restores the processes of `imageDir` into a new container and returns once they run (detached:
 * they outlive the call). Throws `RuntimeError('CHECKPOINT_FAILED')` with CRIU's own error lines.
 */
export async function restoreProcesses(request: RestoreRequest): Promise<void> {
  const args = ['--root', request.runtimeRoot, '--criu', request.criuPath, 'restore', '--detach'];
  if (request.emptyNetwork) args.push('--empty-ns', 'network');
  args.push('--image-path', request.imageDir, '--work-path', request.workDir, '--bundle', request.bundleDir, request.containerId);
  await runRunc(args, join(request.workDir, 'restore.log'), 'restore', request.outputFd);
}

async function runRunc(args: string[], logPath: string, what: 'dump' | 'restore', outputFd?: number): Promise<void> {
  let stderr = '';
  const exit = await new Promise<{ code: number | null; error?: Error }>((resolve) => {
    // The restored processes' stdout/stderr are runc's own (CRIU inherits them for the pipes of the dump).
    const out = outputFd ?? 'ignore';
    const child = spawn('runc', args, { stdio: ['ignore', out, outputFd ?? 'pipe'], timeout: 120_000 });
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (error) => resolve({ code: null, error }));
    child.on('close', (code) => resolve({ code }));
  });
  if (exit.code === 0) return;
  const log = await readFile(logPath, 'utf8').catch(() => '');
  const lines = errorLines(log);
  const reason = lines.length > 0 ? lines.slice(0, 4).join(' / ') : (exit.error?.message ?? (stderr.trim().split('\n')[0] || `runc exited with ${exit.code}`));
  throw new RuntimeError('CHECKPOINT_FAILED', `CRIU ${what} failed: ${reason}`, { cause: exit.error });
}

/** CRIU's `Error (file:line): …` lines, without the RLIMIT_NOFILE one it prints on every run here. */
export function errorLines(log: string): string[] {
  return log
    .split('\n')
    .filter((line) => line.includes('Error (') && !line.includes('RLIMIT_NOFILE'))
    .map((line) => line.replace(/^\([\d.]+\)\s*(\d+:\s*)?/, '').trim());
}

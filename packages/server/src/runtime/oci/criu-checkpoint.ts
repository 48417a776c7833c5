/**
 * Memory checkpoints of oci sandboxes with CRIU, through `runc checkpoint` / `runc restore`: a
 * standalone module the oci driver calls (it does not wire itself into the driver).
 *
 * What holds on this project's machines (kernel 6.18, runc 1.1.5, see docs/runtime-oci.md,
 * "Memory checkpoints (CRIU)"):
 * - Debian 12's criu 3.17 cannot run at all (`criu check`: "vdso: Unexpected rt vDSO area bounds",
 *   kernels from 6.13 split the vvar mapping); `scripts/ensure-criu.sh` builds Debian 13's 4.1.1.
 * - crun 1.8.1 is built without CRIU: only runc can checkpoint.
 * - A container without a user namespace, in a network namespace made by the host (`ip netns add`),
 *   dumps with `--leave-running` (frozen only during the dump) and restores into new containers (new
 *   id, bundle, rootfs, cgroup and network namespace), several from one image, each continuing from
 *   the captured memory.
 * - A sandbox in Corral's own user namespace (pre-made, owning its pre-made network namespace, both
 *   joined by path) dumps, but cannot be restored into another such pair: CRIU recreates the user
 *   namespace from the image (same id mapping) and then cannot join a network namespace that belongs
 *   to another user namespace (`Can't setns 16/net: Operation not permitted`; joining a user
 *   namespace by path comes after, too late). What works: `detachNetworkNamespace` on the image, then
 *   `restoreProcesses` with `emptyNetwork` into a bundle whose user and network namespaces have no
 *   path: CRIU makes a user namespace with the dumped mapping and, inside it, an empty network
 *   namespace that it owns (the structure of Corral's pair); the host then moves the sandbox's veth
 *   into it. The mapping is the dumped one: every sandbox shares one range (userns.ts), so a restored
 *   sandbox maps exactly as a fresh one.
 * - Corral's agent (the init) cannot be dumped: its exec socket is a listening Unix socket made by the
 *   shim in the host's network namespace (`unix: Unix socket <ino> not found`), and its stdout/stderr
 *   is the log file on the sandbox's disk, outside the sandbox's mounts (`Can't lookup mount=…`;
 *   `external file[<mnt hex>:<inode hex>]` in a CRIU config file gets past that one).
 */
import { execFile, spawn } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';
import { RuntimeError } from '../runtime.js';

const execFileAsync = promisify(execFile);

/** The CRIU version `scripts/ensure-criu.sh` builds where Debian 12's fails. */
export const BUILT_CRIU_VERSION = '4.1.1';

/** Where to look for CRIU, best first: the binary `scripts/ensure-criu.sh` builds into the cache, then `criu` on PATH. */
export function criuCandidates(cacheDir: string): string[] {
  return [join(cacheDir, 'criu', BUILT_CRIU_VERSION, `criu-${BUILT_CRIU_VERSION}`, 'criu', 'criu'), 'criu'];
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
  /** Its init is Corral's agent holding the exec socket the shim made on the host. */
  agentInit: boolean;
}

/**
 * Why a sandbox's processes cannot be checkpointed here, or undefined when nothing known stands
 * in the way (CRIU may still refuse: `dumpProcesses` says what it said).
 */
export function memoryCheckpointRefusal(facts: MemoryCheckpointFacts): string | undefined {
  if (facts.runtimeBinary !== 'runc') {
    return `${facts.runtimeBinary} is built without CRIU support here; memory checkpoints need runc`;
  }
  if (facts.agentInit) {
    return (
      "the sandbox's init (Corral's agent) holds its exec socket in the host's network namespace, which CRIU " +
      'cannot dump; the filesystem checkpoint still works'
    );
  }
  return undefined;
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

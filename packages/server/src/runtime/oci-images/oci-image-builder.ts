import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, chown, lchown, lstat, mkdir, mkdtemp, open, readdir, readFile, realpath, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { FAILURE_TAIL_BYTES, type ImageBuilder, ImageBuildError, type ImageBuildRequest, type ImageBuildResult, type ImageTransferRequest, OUTPUT_TAIL_BYTES } from '../image-builder.js';
import { parseImageRef } from '../registry/image-ref.js';
import { RuntimeError } from '../runtime.js';
import { scanDockerfileImages } from '../dockerfile-refs.js';
import { runTool } from '../run-tool.js';
import type { ImageRecord, ImageStore } from './image-store.js';
import { writeImageLayout } from './oci-layout.js';
import { BuildDisk } from './build-disk.js';

/** Limits and isolation of builds on the oci driver. */
export interface OciImageBuildOptions {
  /** Root of the builder's state: `owners/<owner>/` (each owner's build disk, see {@link BuildDisk}), `run/`, `work/`. */
  root: string;
  /** The driver's image store: where `FROM` images come from and where results go. */
  images: ImageStore;
  /** CPU cores a build may use. */
  cpus: number;
  /** Memory a build may use, in bytes. */
  memoryBytes: number;
  /** How long a build may take before it is killed. */
  timeoutMs: number;
  /**
   * Size of each owner's build disk, in bytes: what one build can write (its `RUN` steps, the
   * context, the result) together with the base images kept from the owner's earlier builds.
   */
  diskBytes: number;
  /** Whether `RUN` steps get network (default false: a network namespace with only loopback). */
  network: boolean;
  /** Host ids root in a build maps to: build uid `n` is host uid `hostId + n`, for `size` ids. */
  userns: { hostId: number; size: number };
  /**
   * Called for every image a build takes content from, once the build's owner may use it and
   * before the image store provides it (pulling it when missing): may check it further (rejecting
   * with an {@link ImageBuildError}) and put it into the store from elsewhere (the docker driver
   * takes it from its engine). Absent: the store alone provides images.
   */
  prepareBase?(reference: string, request: ImageBuildRequest): Promise<void>;
}

/** Default host id range of builds: next to the sandboxes' 0x70000000 range, apart from it. */
export const DEFAULT_BUILD_USERNS = { hostId: 0x7100_0000, size: 65_536 };

/** Default size of an owner's build disk ({@link OciImageBuildOptions.diskBytes}): 20 GiB. */
export const DEFAULT_BUILD_DISK_BYTES = 20 * 1024 ** 3;

/** Most processes of build uids at once (RLIMIT_NPROC of RUN steps). */
export const BUILD_NPROC = 4096;

/** The step a buildah log was at: its last `STEP n/m:` line. */
export function lastStep(output: string): string | null {
  const steps = output.match(/^(?:\[\d+\/\d+\] )?STEP \d+\/\d+: .*$/gm);
  return steps?.at(-1) ?? null;
}

/**
 * Builds Dockerfiles with Debian's `buildah` (daemonless): one build at a time per owner (each
 * owner has a build disk, {@link BuildDisk}, of the build disk limit, holding buildah's storage,
 * which keeps their base images between builds, and the context), `RUN` steps in runc
 * with a user namespace (root in a build is an unprivileged host id), no network unless allowed,
 * CPU and memory limits and a deadline. `FROM` images come from the driver's image store (pulled
 * into it from a registry first when missing), copied into the owner's storage; buildah itself
 * never pulls. The result is imported into the image store under the requested reference.
 */
export class OciImageBuilder implements ImageBuilder {
  private readonly perOwner = new Map<string, Promise<unknown>>();
  /** Set once buildah, skopeo and tar were found: they are not looked for again. */
  private toolsFound = false;
  private readonly policyFile: string;
  private readonly registriesFile: string;

  constructor(private readonly options: OciImageBuildOptions) {
    this.policyFile = join(options.root, 'policy.json');
    this.registriesFile = join(options.root, 'registries.conf');
  }

  async unavailable(): Promise<string | undefined> {
    if (this.toolsFound) return undefined;
    for (const [tool, pkg] of [['buildah', 'buildah'], ['skopeo', 'skopeo'], ['tar', 'tar']] as const) {
      try {
        await runTool(tool, ['--version'], { timeoutMs: 10_000 });
      } catch {
        return `required tool '${tool}' is not installed (Debian package '${pkg}'); run 'bash scripts/ensure-oci.sh' to install it`;
      }
    }
    this.toolsFound = true;
    return undefined;
  }

  build(request: ImageBuildRequest): Promise<ImageBuildResult> {
    const previous = this.perOwner.get(request.cacheKey) ?? Promise.resolve();
    const job = previous.catch(() => undefined).then(() => this.buildNow(request));
    const tail = job.catch(() => undefined);
    this.perOwner.set(request.cacheKey, tail);
    void tail.then(() => {
      if (this.perOwner.get(request.cacheKey) === tail) this.perOwner.delete(request.cacheKey);
    });
    return job;
  }

  async remove(reference: string): Promise<void> {
    await this.options.images.remove(reference);
  }

  async rename(from: string, to: string): Promise<string> {
    const record = await this.options.images.get(from);
    if (!record) throw new Error(`${from} is not in the image store`);
    const copy = await this.options.images.tag(record, to);
    await this.options.images.remove(from);
    return copy.digest;
  }

  /** Pulls `source` into the image store (with the user's credentials, when given) and stores it under the reference too. */
  async transfer(request: ImageTransferRequest): Promise<ImageBuildResult> {
    let source: string;
    try {
      source = parseImageRef(request.source).canonical;
    } catch (error) {
      throw new ImageBuildError(`source_image ${request.source}: ${(error as Error).message}`, null, '');
    }
    if (parseImageRef(source).registry === 'corral.local') {
      throw new ImageBuildError(`source_image ${request.source}: built images are not transferred; build it again or use it as it is`, null, '');
    }
    request.onOutput(`corral: pulling ${source}\n`);
    let record: ImageRecord;
    try {
      // Pulled again (not taken from the store): the registry decides whether these credentials may have it.
      record = await this.options.images.pull(source, request.credentials);
    } catch (error) {
      const message = error instanceof RuntimeError ? error.message : String(error);
      throw new ImageBuildError(`the registry did not give ${source}: ${message}`, null, '');
    }
    const reference = parseImageRef(request.reference).canonical;
    const copy = await this.options.images.tag(record, reference);
    let sizeBytes = 0;
    for (const hex of copy.layers) sizeBytes += await directorySize(this.options.images.layerDir(hex));
    request.onOutput(`corral: stored ${reference} (${copy.digest})\n`);
    return { reference, digest: copy.digest, sizeBytes };
  }

  /** buildah's storage options: its root on the owner's mounted build disk. */
  private storageArgs(cacheKey: string, diskMount: string): string[] {
    return ['--root', join(diskMount, 'storage'), '--runroot', join(this.options.root, 'run', safeName(cacheKey)), '--storage-driver', 'overlay'];
  }

  private async setup(): Promise<void> {
    await mkdir(join(this.options.root, 'work'), { recursive: true, mode: 0o700 });
    // Owners' storage from before build disks, directly on the data dir's file system.
    await rm(join(this.options.root, 'storage'), { recursive: true, force: true });
    // Images come only from Corral's store: no signature checks to make, no registry to search.
    await writeFile(this.policyFile, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    await writeFile(this.registriesFile, 'unqualified-search-registries = ["docker.io"]\n');
  }

  private async buildNow(request: ImageBuildRequest): Promise<ImageBuildResult> {
    await this.setup();
    const work = await mkdtemp(join(this.options.root, 'work', 'build-'));
    // buildah's scratch directory (TMPDIR), where it mounts each RUN step's root file system: root in
    // the build's user namespace must reach it, which a data dir under a private (0700) parent does
    // not allow, so it is a directory of its own under /var/tmp, searchable but not listable.
    const scratch = await mkdtemp('/var/tmp/corral-build-');
    await chmod(scratch, 0o711);
    let output = '';
    const emit = (text: string): void => {
      output = (output + text).slice(-OUTPUT_TAIL_BYTES);
      request.onOutput(text);
    };
    // The owner's build disk, mounted at `<scratch>/disk` for this build: buildah's storage and the
    // context live on it, so what the build writes is bounded by its size.
    const disk = new BuildDisk(join(this.options.root, 'owners', safeName(request.cacheKey)), this.options.diskBytes);
    const mountPoint = join(scratch, 'disk');
    let mounted = false;
    let diskFull = false;
    const outOfDisk = (what: string, step: string | null = null): ImageBuildError => {
      diskFull = true;
      return new ImageBuildError(`${what} the build disk (${gib(this.options.diskBytes)}, CORRAL_IMAGE_BUILD_DISK_GB)${step ? ` at ${step}` : ''}`, step, output.slice(-FAILURE_TAIL_BYTES));
    };
    try {
      await mkdir(mountPoint, { mode: 0o755 });
      await disk.mount(mountPoint);
      mounted = true;
      // Unpacked by an unprivileged host user (nobody) reading the tarball on stdin: no device nodes,
      // set-id bits or owners from the archive, and no write outside the directory it owns. GNU tar
      // also refuses members with `..` and holds back links that point out of the directory.
      const context = join(mountPoint, 'context');
      await rm(context, { recursive: true, force: true });
      await mkdir(context, { mode: 0o700 });
      await chown(context, NOBODY, NOBODY);
      try {
        await extractAsNobody(request.contextTar, context);
      } catch (error) {
        const message = (error as Error).message;
        if (NO_SPACE.test(message)) throw outOfDisk('the build context does not fit in');
        throw new ImageBuildError(`the build context is not a readable tar archive: ${message.slice(-500)}`, null, '');
      }
      const dockerfile = resolve(context, request.dockerfilePath);
      const real = await realpath(dockerfile).catch(() => undefined);
      if (real === undefined || relative(context, real).startsWith('..') || !(await stat(real)).isFile()) {
        throw new ImageBuildError(`the build context has no file ${request.dockerfilePath}`, null, '');
      }
      const storage = this.storageArgs(request.cacheKey, mountPoint);
      // Every image the Dockerfile takes content from (FROM, COPY --from, with global ARG defaults)
      // goes into the owner's storage first; buildah never pulls, so a reference left unresolved
      // can name only what the owner's storage already holds.
      const { images, unresolved } = scanDockerfileImages(await readFile(dockerfile, 'utf8'));
      for (const base of images) {
        emit(`corral: resolving ${base}\n`);
        try {
          await this.provideBase(base, request, storage, work, disk);
        } catch (error) {
          if (!(error instanceof ImageBuildError) && NO_SPACE.test((error as Error).message)) throw outOfDisk(`FROM ${base}: the image does not fit in`);
          throw error;
        }
      }
      for (const reference of unresolved) emit(`corral: ${reference} names a build argument without a global ARG default: only images already in your build storage can match it\n`);
      const reference = parseImageRef(request.reference).canonical;
      try {
        await this.runBuild(request, storage, context, dockerfile, reference, scratch, emit);
      } catch (error) {
        if (NO_SPACE.test(output)) throw outOfDisk('the build ran out of', lastStep(output));
        throw error;
      }
      // The result goes out as an OCI layout whose base layers the store already holds: a file
      // named by each known layer's digest is put in its place first, which buildah's push takes as
      // "already there" and does not write, and the import takes those layers from the store.
      const known = await this.knownLayers(disk);
      const layout = join(work, 'result');
      await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
      for (const digest of Object.keys(known)) await writeFile(join(layout, 'blobs', 'sha256', digest.replace(/^sha256:/, '')), '');
      await runTool('buildah', [...storage, 'push', '--disable-compression', '--signature-policy', this.policyFile, reference, `oci:${layout}:${reference}`], { timeoutMs: 600_000 });
      const imported = await this.options.images.importLayout(layout, reference, new Map(Object.entries(known).map(([digest, layer]) => [digest, layer.hex])));
      const record = imported.record;
      // buildah 1.28 commits the layers a build made with their host ids (root as 0x71000000, not 0):
      // they are given back the ids the build saw, or sandboxes would see them as nobody's.
      for (const hex of imported.added) await unshiftOwners(this.options.images.layerDir(hex), this.options.userns);
      // The driver's store holds the result now; the owner's storage keeps only base images.
      await runTool('buildah', [...storage, 'rmi', '--force', reference], { timeoutMs: 120_000 }).catch(() => undefined);
      const sizeBytes = imported.blobBytes + Object.values(known).filter((l) => record.layers.includes(l.hex)).reduce((sum, l) => sum + l.size, 0);
      emit(`corral: stored ${reference} (${record.digest}, ${sizeBytes} bytes)\n`);
      return { reference, digest: record.digest, sizeBytes };
    } catch (error) {
      if (error instanceof ImageBuildError) throw error;
      throw new ImageBuildError((error as Error).message.slice(-2000), lastStep(output), output.slice(-FAILURE_TAIL_BYTES));
    } finally {
      if (mounted) {
        await rm(join(mountPoint, 'context'), { recursive: true, force: true });
        await disk.unmount(mountPoint, diskFull);
      }
      await rm(work, { recursive: true, force: true });
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /** The owner's base layers: buildah's digest of each (as the archive it was given) to the store's layer. */
  private async knownLayers(disk: BuildDisk): Promise<Record<string, KnownLayer>> {
    try {
      return JSON.parse(await readFile(join(disk.metadataDir, 'layers.json'), 'utf8')) as Record<string, KnownLayer>;
    } catch {
      return {};
    }
  }

  private async rememberLayers(disk: BuildDisk, layers: Record<string, KnownLayer>): Promise<void> {
    const file = join(disk.metadataDir, 'layers.json');
    await mkdir(disk.metadataDir, { recursive: true });
    await writeFile(`${file}.tmp`, JSON.stringify({ ...(await this.knownLayers(disk)), ...layers }));
    await rename(`${file}.tmp`, file);
  }

  /** Puts a `FROM` image into the owner's storage, from the driver's image store. */
  private async provideBase(base: string, request: ImageBuildRequest, storage: string[], work: string, disk: BuildDisk): Promise<void> {
    let canonical: string;
    try {
      canonical = parseImageRef(base).canonical;
    } catch (error) {
      throw new ImageBuildError(`FROM ${base}: ${(error as Error).message}`, null, '');
    }
    if (!(await request.mayUseBase(canonical))) throw new ImageBuildError(`FROM ${base}: no such image`, null, '');
    await this.options.prepareBase?.(canonical, request);
    let record: ImageRecord;
    try {
      record = await this.options.images.ensure(canonical, await request.baseCredentials?.(canonical));
    } catch (error) {
      const message = error instanceof RuntimeError ? error.message : String(error);
      throw new ImageBuildError(`FROM ${base}: not in Corral's image store and not pullable: ${message}`, null, '');
    }
    const marker = join(disk.metadataDir, 'bases', createHash('sha256').update(canonical).digest('hex').slice(0, 32));
    if ((await readFile(marker, 'utf8').catch(() => '')) === record.digest) return;
    const layout = join(work, `base-${createHash('sha256').update(canonical).digest('hex').slice(0, 12)}`);
    const known = await writeOciLayout(record, layout, (hex) => this.options.images.layerDir(hex));
    await this.rememberLayers(disk, known);
    await runTool('skopeo', [
      'copy', '--quiet', '--policy', this.policyFile,
      `oci:${layout}:latest`,
      `containers-storage:[overlay@${storage[1]}+${storage[3]}]${canonical}`,
    ], { timeoutMs: 600_000 });
    await mkdir(join(marker, '..'), { recursive: true });
    await writeFile(`${marker}.tmp`, record.digest);
    await rename(`${marker}.tmp`, marker);
  }

  private runBuild(
    request: ImageBuildRequest,
    storage: string[],
    context: string,
    dockerfile: string,
    reference: string,
    scratch: string,
    emit: (text: string) => void,
  ): Promise<void> {
    const { cpus, memoryBytes, timeoutMs, network, userns } = this.options;
    const memory = `${Math.max(6, Math.floor(memoryBytes / 1024 ** 2))}m`;
    const map = `0:${userns.hostId}:${userns.size}`;
    const args = [
      ...storage,
      'bud',
      '--pull-never',
      // No --layers: buildah 1.28 commits a step's layer with its host ids under a user namespace,
      // so the next step sees its own files as nobody's (checked by hand; see docs/images.md).
      '--layers=false',
      '--isolation', 'oci',
      '--runtime', 'runc',
      '--cgroup-manager', 'cgroupfs',
      // Every RUN step's cgroup goes under one of this build's, so a stopped build's processes can be found.
      '--cgroup-parent', buildCgroup(scratch),
      '--signature-policy', this.policyFile,
      '--network', network ? 'host' : 'none',
      '--userns-uid-map', map,
      '--userns-gid-map', map,
      '--memory', memory,
      '--memory-swap', memory,
      '--cpu-period', '100000',
      '--cpu-quota', String(Math.max(1000, Math.round(cpus * 100_000))),
      // buildah 1.28 has no --pids-limit; RLIMIT_NPROC counts the build's (shared, unprivileged) host uid.
      '--ulimit', `nproc=${BUILD_NPROC}:${BUILD_NPROC}`,
      '--format', 'oci',
      '--file', dockerfile,
      '--tag', reference,
      context,
    ];
    return new Promise((resolveBuild, reject) => {
      const child = spawn('buildah', args, {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: this.options.root, CONTAINERS_REGISTRIES_CONF: this.registriesFile, TMPDIR: scratch },
      });
      let output = '';
      const collect = (chunk: Buffer): void => {
        const text = chunk.toString('utf8');
        output = (output + text).slice(-OUTPUT_TAIL_BYTES);
        emit(text);
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        if (child.pid !== undefined) {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
      }, timeoutMs);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new ImageBuildError(`buildah did not start: ${error.message}`, null, ''));
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        if (code === 0 && !timedOut) {
          resolveBuild();
          return;
        }
        // A killed buildah leaves its RUN step running (runc starts it in a session of its own) and
        // its working containers in the owner's storage, which hold no image.
        const cleanup = async (): Promise<void> => {
          await killCgroupTree(buildCgroup(scratch));
          await runTool('buildah', [...storage, 'rm', '--all'], { timeoutMs: 60_000 }).catch(() => undefined);
        };
        const step = lastStep(output);
        const failed = (): void => {
          const reason = timedOut ? `the build took longer than ${Math.round(timeoutMs / 1000)} s and was stopped` : `the build failed (buildah exit ${code ?? 'signal'})`;
          reject(new ImageBuildError(step ? `${reason} at ${step}` : reason, step, output.slice(-FAILURE_TAIL_BYTES)));
        };
        void cleanup().finally(failed);
      });
    });
  }
}

/**
 * Gives every file under `dir` whose owner or group lies in the build's host id range the id it
 * had in the build (`host id - hostId`); other ids are left alone. Links are changed, not followed.
 */
export async function unshiftOwners(dir: string, userns: { hostId: number; size: number }): Promise<number> {
  const shift = (id: number): number => (id >= userns.hostId && id < userns.hostId + userns.size ? id - userns.hostId : id);
  let changed = 0;
  const walk = async (path: string): Promise<void> => {
    const info = await lstat(path);
    const uid = shift(info.uid);
    const gid = shift(info.gid);
    if (uid !== info.uid || gid !== info.gid) {
      await lchown(path, uid, gid);
      // chown clears set-id bits: put back what the build made.
      if ((info.mode & 0o6000) !== 0 && !info.isSymbolicLink()) await chmod(path, info.mode & 0o7777);
      changed += 1;
    }
    if (info.isDirectory()) for (const name of await readdir(path)) await walk(join(path, name));
  };
  await walk(dir);
  return changed;
}

/** What a tool says when the build disk is full. */
const NO_SPACE = /no space left on device/i;

/** `n GiB` for messages. */
function gib(bytes: number): string {
  return `${Number((bytes / 1024 ** 3).toFixed(2))} GiB`;
}

/** An owner key as a file name. */
function safeName(key: string): string {
  return key.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/** The host user that unpacks build contexts. */
const NOBODY = 65_534;

/** Unpacks a tarball (plain, gzip or zstd) into `dir` as {@link NOBODY}, the archive on stdin. */
async function extractAsNobody(tarball: string, dir: string): Promise<void> {
  // tar cannot tell the compression of a pipe: the magic numbers of gzip and zstd say it.
  const head = Buffer.alloc(4);
  const file = await open(tarball, 'r');
  try {
    await file.read(head, 0, 4, 0);
  } finally {
    await file.close();
  }
  const compression = head[0] === 0x1f && head[1] === 0x8b ? ['--gzip'] : head.readUInt32LE(0) === 0xfd2fb528 ? ['--zstd'] : [];
  return new Promise((done, fail) => {
    const child = spawn(
      'setpriv',
      [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', 'tar', '--extract', ...compression, '--file', '-', '--directory', dir, '--no-same-owner', '--no-same-permissions'],
      { stdio: ['pipe', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString('utf8')).slice(-4000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      fail(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) done();
      else fail(new Error(`tar exit ${code ?? 'signal'}: ${stderr.trim()}`));
    });
    const input = createReadStream(tarball);
    input.once('error', (error) => child.kill('SIGKILL') && fail(error));
    child.stdin.on('error', () => undefined);
    input.pipe(child.stdin);
  });
}

/** The cgroup (under each hierarchy's root, or this process's cgroup for memory) a build's RUN steps go under. */
function buildCgroup(scratch: string): string {
  return `corral-${basename(scratch)}`;
}

/**
 * SIGKILLs every process in cgroups named `name` (found at most four levels deep under
 * /sys/fs/cgroup, in every hierarchy) and their children, then removes those cgroups.
 */
export async function killCgroupTree(name: string, root = '/sys/fs/cgroup'): Promise<void> {
  const found: string[] = [];
  const search = async (dir: string, depth: number): Promise<void> => {
    if (depth > 4) return;
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!entry.isDirectory()) continue;
      const path = join(dir, entry.name);
      if (entry.name === name) found.push(path);
      else await search(path, depth + 1);
    }
  };
  await search(root, 0);
  const tree: string[] = [];
  const collect = async (dir: string): Promise<void> => {
    tree.push(dir);
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) if (entry.isDirectory()) await collect(join(dir, entry.name));
  };
  for (const dir of found) await collect(dir);
  // A SIGKILLed process leaves only once it is out of uninterruptible waits (I/O on a loaded host):
  // up to 30 s, then the cgroups are left behind (and the processes, if they never go).
  for (let attempt = 0; attempt < 300 && tree.length > 0; attempt += 1) {
    for (const dir of tree) {
      const pids = (await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
    // Deepest first: a cgroup goes once its children and processes have.
    for (const dir of [...tree].sort((a, b) => b.length - a.length)) {
      await rmdir(dir).then(() => tree.splice(tree.indexOf(dir), 1)).catch(() => undefined);
    }
    if (tree.length > 0) await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Writes an image of the store as an OCI layout buildah can read: each unpacked layer archived
 * again (uncompressed, ids as stored; overlay whiteouts stay as they are, which buildah's overlay
 * storage reads as whiteouts). Returns buildah's digest of each layer (the archive's) to the store's layer.
 */
async function writeOciLayout(record: ImageRecord, dir: string, layerDir: (hex: string) => string): Promise<Record<string, KnownLayer>> {
  const archive = async (hex: string, out: string): Promise<void> => {
    await runTool('tar', ['--create', '--file', out, '--directory', layerDir(hex), '--numeric-owner', '--xattrs', '--xattrs-include=trusted.overlay.*', '.'], { timeoutMs: 600_000 });
  };
  const { layers } = await writeImageLayout(record, dir, archive);
  return Object.fromEntries(layers.map((l) => [l.digest, { hex: l.hex, size: l.size }]));
}

/** A base layer as buildah holds it (the digest of its archive) and where the image store has it unpacked. */
export interface KnownLayer {
  /** The store's layer (`ImageStore.layerDir(hex)`). */
  hex: string;
  /** Bytes of the archive buildah was given. */
  size: number;
}

/** Bytes of the regular files under `dir` (links not followed). */
async function directorySize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    total += (await lstat(join(entry.parentPath ?? entry.path, entry.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, open, readdir, readFile, realpath, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { FAILURE_TAIL_BYTES, type ImageBuilder, ImageBuildError, type ImageBuildRequest, type ImageBuildResult, type ImageTransferRequest, OUTPUT_TAIL_BYTES } from '../image-builder.js';
import { parseImageRef } from '../registry/image-ref.js';
import { RuntimeError } from '../runtime.js';
import { qualifyDockerfileImages, scanDockerfileImages } from '../dockerfile-refs.js';
import { runTool } from '../run-tool.js';
import type { ImageRecord, ImageStore } from './image-store.js';
import { writeImageLayout } from './oci-layout.js';
import { makeBuildCgroups } from './build-cgroup.js';
import { BuildDisk } from './build-disk.js';
import { type BuildIdMap, BuildNamespace } from './build-namespace.js';
import { directorySize } from '../../util/directory-size.js';

/** Limits and isolation of builds on the oci driver. */
export interface OciImageBuildOptions {
  /** Root of the builder's state: `owners/<owner>/` (each owner's build disk and what it holds); a build's other files are under `/var/tmp/corral-builds-<hash of root>/`. */
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
   * context, the result) together with the base images and layer cache kept from earlier builds.
   */
  diskBytes: number;
  /** Whether `RUN` steps get network (default false: a network namespace with only loopback). */
  network: boolean;
  /** Host ids root in a build maps to: build uid `n` is host uid `hostId + n`, for `size` ids. */
  userns: BuildIdMap;
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

/** Most processes of build uids at once (RLIMIT_NPROC of RUN steps, the pids limit of the build's cgroup). */
export const BUILD_NPROC = 4096;

/** The step a buildah log was at: its last `STEP n/m:` line. */
export function lastStep(output: string): string | null {
  const steps = output.match(/^(?:\[\d+\/\d+\] )?STEP \d+\/\d+: .*$/gm);
  return steps?.at(-1) ?? null;
}

/**
 * Builds Dockerfiles with Debian's `buildah` (daemonless), one build at a time per owner. buildah,
 * skopeo and every `RUN` step run as root of a user namespace ({@link BuildNamespace}: root in a
 * build is an unprivileged host id) with a private mount namespace, on the owner's build disk
 * ({@link BuildDisk}: ext4 of the build disk limit), which keeps their base images and buildah's
 * layer cache (`--layers`) between builds. `RUN` steps have no network unless allowed, and run in
 * a cgroup whose CPU, memory and pids limits host root set ({@link makeBuildCgroups}), under a
 * deadline. `FROM` images come from the driver's image store (pulled into it from a registry first
 * when missing), copied into the owner's storage; buildah itself never pulls. The result is
 * imported into the image store under the requested reference.
 */
export class OciImageBuilder implements ImageBuilder {
  private readonly perOwner = new Map<string, Promise<unknown>>();
  /** Set once buildah, skopeo and tar were found: they are not looked for again. */
  private toolsFound = false;
  private readonly policyFile: string;
  private readonly registriesFile: string;
  /**
   * Where this builder's builds keep what the build namespace's root must reach (their disk's
   * mount point, buildah's run and temporary directories): a searchable (0711) directory of its
   * own under /var/tmp, named by the builder's root.
   */
  private readonly scratchParent: string;
  private setupDone: Promise<void> | undefined;

  constructor(private readonly options: OciImageBuildOptions) {
    this.scratchParent = join('/var/tmp', `corral-builds-${createHash('sha256').update(resolve(options.root)).digest('hex').slice(0, 12)}`);
    // Read by the tools in the build namespace: next to the builds, not under the data dir.
    this.policyFile = join(this.scratchParent, 'policy.json');
    this.registriesFile = join(this.scratchParent, 'registries.conf');
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

  private setup(): Promise<void> {
    this.setupDone ??= (async () => {
      await mkdir(this.scratchParent, { recursive: true, mode: 0o711 });
      await chmod(this.scratchParent, 0o711);
      // Images come only from Corral's store: no signature checks to make, no registry to search.
      await writeFile(this.policyFile, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }), { mode: 0o644 });
      await writeFile(this.registriesFile, 'unqualified-search-registries = ["docker.io"]\n', { mode: 0o644 });
      // What builds of an earlier process of this builder left (it died mid-build): disks unmounted, files deleted.
      for (const entry of (await readdir(this.scratchParent)).filter((name) => name.startsWith('b-'))) {
        await runTool('umount', ['--lazy', join(this.scratchParent, entry, 'disk')], { timeoutMs: 30_000 }).catch(() => undefined);
        await rm(join(this.scratchParent, entry), { recursive: true, force: true });
      }
      // What builds kept before build disks and build namespaces: owners' storage and run
      // directories on the data dir's file system, and a work directory.
      for (const old of ['storage', 'run', 'work']) await rm(join(this.options.root, old), { recursive: true, force: true });
    })().catch((error: unknown) => {
      this.setupDone = undefined;
      throw error;
    });
    return this.setupDone;
  }

  private async buildNow(request: ImageBuildRequest): Promise<ImageBuildResult> {
    await this.setup();
    const { hostId } = this.options.userns;
    // The build's directory: the owner's disk is mounted at `disk/`; `run/`, `tmp/` (buildah's
    // TMPDIR, where it keeps each RUN step's bundle) and `home/` belong to the namespace's root,
    // which must reach them, so they are not under the data dir's private (0700) parents.
    const scratch = await mkdtemp(join(this.scratchParent, 'b-'));
    await chmod(scratch, 0o711);
    const paths = {
      disk: join(scratch, 'disk'),
      storage: join(scratch, 'disk', 'storage'),
      context: join(scratch, 'disk', 'context'),
      out: join(scratch, 'disk', 'out'),
      run: join(scratch, 'run'),
      tmp: join(scratch, 'tmp'),
      home: join(scratch, 'home'),
      bases: join(scratch, 'bases'),
      stage: join(scratch, 'stage'),
    };
    const disk = new BuildDisk(join(this.options.root, 'owners', safeName(request.cacheKey)), this.options.diskBytes);
    const cgroupName = buildCgroup(scratch);
    let output = '';
    const emit = (text: string): void => {
      output = (output + text).slice(-OUTPUT_TAIL_BYTES);
      request.onOutput(text);
    };
    let namespace: BuildNamespace | undefined;
    let mounted = false;
    let diskFull = false;
    /** The failure of a build that filled its disk (which then starts empty next time). */
    const outOfDisk = (what: string, step: string | null = null): ImageBuildError => {
      diskFull = true;
      return new ImageBuildError(`${what} the build disk (${gib(this.options.diskBytes)}, CORRAL_IMAGE_BUILD_DISK_GB)${step ? ` at ${step}` : ''}`, step, step ? output.slice(-FAILURE_TAIL_BYTES) : '');
    };
    try {
      for (const dir of [paths.disk, paths.bases]) await mkdir(dir, { mode: 0o755 });
      for (const dir of [paths.run, paths.tmp, paths.home, paths.stage]) {
        await mkdir(dir, { mode: 0o700 });
        await chown(dir, hostId, hostId);
      }
      await disk.mount(paths.disk);
      mounted = true;
      for (const dir of [paths.context, paths.out]) await rm(dir, { recursive: true, force: true });
      await mkdir(paths.storage, { recursive: true, mode: 0o700 });
      await chown(paths.storage, hostId, hostId);
      await mkdir(paths.out, { mode: 0o700 });
      await chown(paths.out, hostId, hostId);
      // The context belongs to the namespace's nobody, who unpacks it.
      await mkdir(paths.context, { mode: 0o700 });
      await chown(paths.context, hostId + NOBODY, hostId + NOBODY);
      namespace = await BuildNamespace.open(this.options.userns);
      const ns = namespace;
      // The build's cgroups, with its limits, are all of /sys/fs/cgroup the namespace (and a step) sees.
      const cgroups = await makeBuildCgroups(cgroupName, hostId, { memoryBytes: this.options.memoryBytes, cpuCores: this.options.cpus, pidsLimit: BUILD_NPROC });
      await ns.isolateSysfs(cgroups.binds, paths.stage);
      const storage = ['--root', paths.storage, '--runroot', paths.run, '--storage-driver', 'overlay'];
      // Unpacked by the namespace's nobody reading the tarball on stdin: no device nodes, set-id
      // bits or owners from the archive, no write outside the directory it owns, and no more than
      // the build disk holds. GNU tar also refuses members with `..` and holds back links that
      // point out of the directory.
      try {
        await extractInNamespace(request.contextTar, paths.context, ns);
      } catch (error) {
        const message = (error as Error).message;
        if (NO_SPACE.test(message)) throw outOfDisk('the build context does not fit in');
        throw new ImageBuildError(`the build context is not a readable tar archive: ${message.slice(-500)}`, null, '');
      }
      const dockerfile = resolve(paths.context, request.dockerfilePath);
      const real = await realpath(dockerfile).catch(() => undefined);
      if (real === undefined || relative(paths.context, real).startsWith('..') || !(await stat(real)).isFile()) {
        throw new ImageBuildError(`the build context has no file ${request.dockerfilePath}`, null, '');
      }
      // Every image the Dockerfile takes content from (FROM, COPY --from, with global ARG defaults)
      // goes into the owner's storage first; buildah never pulls, so a reference left unresolved
      // can name only what the owner's storage already holds.
      const text = await readFile(dockerfile, 'utf8');
      const { images, unresolved } = scanDockerfileImages(text);
      for (const base of images) {
        emit(`corral: resolving ${base}\n`);
        await this.provideBase(base, request, { ns, storage, disk, bases: paths.bases, runroot: paths.run, tmp: paths.tmp, home: paths.home }).catch((error: unknown) => {
          throw !(error instanceof ImageBuildError) && NO_SPACE.test((error as Error).message) ? outOfDisk(`FROM ${base}: the image does not fit in`) : error;
        });
      }
      for (const reference of unresolved) emit(`corral: ${reference} names a build argument without a global ARG default: only images already in your build storage can match it\n`);
      const reference = parseImageRef(request.reference).canonical;
      // buildah in the build namespace finds images in its storage by full name only: the
      // Dockerfile it reads names them so (`busybox` as `docker.io/library/busybox:latest`).
      const qualified = join(paths.tmp, 'Dockerfile');
      await writeFile(qualified, qualifyDockerfileImages(text, (image) => canonicalOrUndefined(image)), { mode: 0o644 });
      try {
        await this.runBuild(request, ns, storage, paths, qualified, reference, { name: cgroupName, parent: cgroups.parent }, emit);
      } catch (error) {
        throw NO_SPACE.test(output) ? outOfDisk('the build ran out of', lastStep(output)) : error;
      }
      // The result goes out as an OCI layout whose base layers the store already holds: a file
      // named by each known layer's digest is put in its place first, which buildah's push takes as
      // "already there" and does not write, and the import takes those layers from the store.
      const known = await this.knownLayers(disk);
      await mkdir(join(paths.out, 'blobs', 'sha256'), { recursive: true });
      await chown(join(paths.out, 'blobs'), hostId, hostId);
      await chown(join(paths.out, 'blobs', 'sha256'), hostId, hostId);
      for (const digest of Object.keys(known)) await writeFile(join(paths.out, 'blobs', 'sha256', digest.replace(/^sha256:/, '')), '');
      try {
        await this.inNamespace(ns, ['buildah', ...storage, 'push', '--disable-compression', '--signature-policy', this.policyFile, reference, `oci:${paths.out}:${reference}`], paths);
      } catch (error) {
        throw NO_SPACE.test((error as Error).message) ? outOfDisk('the built image does not fit in') : error;
      }
      // Layers the build made hold the ids the build saw: buildah ran in the build's namespace.
      const imported = await this.options.images.importLayout(paths.out, reference, new Map(Object.entries(known).map(([digest, layer]) => [digest, layer.hex])));
      const record = imported.record;
      const sizeBytes = imported.blobBytes + Object.values(known).filter((l) => record.layers.includes(l.hex)).reduce((sum, l) => sum + l.size, 0);
      emit(`corral: stored ${reference} (${record.digest}, ${sizeBytes} bytes)\n`);
      return { reference, digest: record.digest, sizeBytes };
    } catch (error) {
      if (error instanceof ImageBuildError) throw error;
      throw new ImageBuildError((error as Error).message.slice(-2000), lastStep(output), output.slice(-FAILURE_TAIL_BYTES));
    } finally {
      // The owner's disk keeps the storage (base images, the layer cache); the rest goes.
      await namespace?.close();
      await killCgroupTree(cgroupName);
      if (mounted) {
        for (const dir of [paths.context, paths.out]) await rm(dir, { recursive: true, force: true });
        await disk.unmount(paths.disk, diskFull);
      }
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /** Runs a tool as the build namespace's root, in the build's environment; its output. */
  private async inNamespace(ns: BuildNamespace, argv: string[], paths: { tmp: string; home: string }, timeoutMs = 600_000): Promise<string> {
    const { file, args } = ns.command(['env', ...this.toolEnv(paths), ...argv]);
    const { stdout } = await runTool(file, args, { timeoutMs });
    return stdout;
  }

  /** The environment of the build's tools, as `env` arguments: a home and a TMPDIR of the build's, and its registries file. */
  private toolEnv(paths: { tmp: string; home: string }): string[] {
    return [`PATH=${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`, `HOME=${paths.home}`, `CONTAINERS_REGISTRIES_CONF=${this.registriesFile}`, `TMPDIR=${paths.tmp}`];
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
  private async provideBase(
    base: string,
    request: ImageBuildRequest,
    at: { ns: BuildNamespace; storage: string[]; disk: BuildDisk; bases: string; runroot: string; tmp: string; home: string },
  ): Promise<void> {
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
    const key = createHash('sha256').update(canonical).digest('hex').slice(0, 32);
    const marker = join(at.disk.metadataDir, 'bases', key);
    if ((await readFile(marker, 'utf8').catch(() => '')) === record.digest) return;
    // Written by host root where the namespace's root may read it (0755 directories, 0644 files).
    const layout = join(at.bases, key);
    const known = await writeOciLayout(record, layout, (hex) => this.options.images.layerDir(hex));
    await this.rememberLayers(at.disk, known);
    try {
      await this.inNamespace(at.ns, [
        'skopeo', 'copy', '--quiet', '--policy', this.policyFile,
        `oci:${layout}:latest`,
        `containers-storage:[overlay@${at.storage[1]}+${at.runroot}]${canonical}`,
      ], at);
    } finally {
      await rm(layout, { recursive: true, force: true });
    }
    await mkdir(join(marker, '..'), { recursive: true });
    await writeFile(`${marker}.tmp`, record.digest);
    await rename(`${marker}.tmp`, marker);
  }

  private runBuild(
    request: ImageBuildRequest,
    ns: BuildNamespace,
    storage: string[],
    paths: { context: string; tmp: string; home: string },
    dockerfile: string,
    reference: string,
    cgroup: { name: string; parent: string },
    emit: (text: string) => void,
  ): Promise<void> {
    const { timeoutMs, network } = this.options;
    const args = [
      ...storage,
      'bud',
      '--pull-never',
      // Each step is committed and reused by the owner's next build while its inputs are the same.
      '--layers',
      '--isolation', 'oci',
      '--runtime', 'runc',
      '--cgroup-manager', 'cgroupfs',
      // The cgroup host root made with the build's CPU, memory and pids limits: runc joins it.
      '--cgroup-parent', cgroup.parent,
      '--cgroupns', 'private',
      '--signature-policy', this.policyFile,
      '--network', network ? 'host' : 'none',
      // RLIMIT_NPROC counts the namespace root's host uid; the pids limit of the cgroup counts the build.
      '--ulimit', `nproc=${BUILD_NPROC}:${BUILD_NPROC}`,
      '--format', 'oci',
      '--file', dockerfile,
      '--tag', reference,
      paths.context,
    ];
    const { file, args: argv } = ns.command(['env', ...this.toolEnv(paths), 'buildah', ...args]);
    return new Promise((resolveBuild, reject) => {
      const child = spawn(file, argv, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
      let output = '';
      const lines = new RuncNoiseFilter((text) => {
        output = (output + text).slice(-OUTPUT_TAIL_BYTES);
        emit(text);
      });
      child.stdout.on('data', (chunk: Buffer) => lines.write(chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => lines.write(chunk.toString('utf8')));
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
        lines.end();
        if (code === 0 && !timedOut) {
          resolveBuild();
          return;
        }
        // A killed buildah leaves its RUN step running (runc starts it in a session of its own) and
        // its working containers in the owner's storage, which hold no image.
        const cleanup = async (): Promise<void> => {
          await killCgroupTree(cgroup.name);
          await this.inNamespace(ns, ['buildah', ...storage, 'rm', '--all'], paths, 60_000).catch(() => undefined);
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
 * Passes a build's output on line by line, without runc's complaints that it could not remove
 * the `steps` cgroup after a step: that cgroup is host root's by design (see
 * {@link makeBuildCgroups}) and goes with the build.
 */
class RuncNoiseFilter {
  private pending = '';

  constructor(private readonly emit: (text: string) => void) {}

  write(text: string): void {
    const lines = (this.pending + text).split('\n');
    this.pending = lines.pop() ?? '';
    const kept = lines.filter((line) => !RUNC_CGROUP_NOISE.test(line));
    if (kept.length > 0) this.emit(`${kept.join('\n')}\n`);
  }

  end(): void {
    if (this.pending !== '' && !RUNC_CGROUP_NOISE.test(this.pending)) this.emit(this.pending);
    this.pending = '';
  }
}

const RUNC_CGROUP_NOISE = /level=(?:warning|error) msg="Failed to remove (?:cgroup|paths)/;

/** What a tool says when the build disk is full. */
const NO_SPACE = /no space left on device/i;

/** `n GiB` for messages. */
function gib(bytes: number): string {
  return `${Number((bytes / 1024 ** 3).toFixed(2))} GiB`;
}

/** The canonical form of an image reference; undefined when it does not parse. */
function canonicalOrUndefined(image: string): string | undefined {
  try {
    return parseImageRef(image).canonical;
  } catch {
    return undefined;
  }
}

/** An owner key as a file name. */
function safeName(key: string): string {
  return key.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/** The build namespace's user that unpacks build contexts (its nobody). */
const NOBODY = 65_534;

/** Unpacks a tarball (plain, gzip or zstd) into `dir` as the namespace's {@link NOBODY}, the archive on stdin. */
async function extractInNamespace(tarball: string, dir: string, ns: BuildNamespace): Promise<void> {
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
    const { file: command, args } = ns.command(['tar', '--extract', ...compression, '--file', '-', '--directory', dir, '--no-same-owner', '--no-same-permissions'], { uid: NOBODY });
    const child = spawn(command, args, { stdio: ['pipe', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
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


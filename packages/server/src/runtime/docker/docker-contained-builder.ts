import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { type ImageBuilder, ImageBuildError, type ImageBuildRequest, type ImageBuildResult, type ImageTransferRequest } from '../image-builder.js';
import { importFromDockerDaemon } from '../oci-images/docker-daemon-import.js';
import { exportImage } from '../oci-images/image-export.js';
import { ImageStore } from '../oci-images/image-store.js';
import { DEFAULT_BUILD_USERNS, OciImageBuilder } from '../oci-images/oci-image-builder.js';
import { parseImageRef } from '../registry/image-ref.js';
import { runTool } from '../run-tool.js';
import type { DockerImageBuilder } from './docker-image-builder.js';

/** What {@link ContainedDockerImageBuilder} needs. */
export interface ContainedDockerBuildOptions {
  docker: Docker;
  /** The engine's builder: its base checks, and transfers, renames and removes (engine operations, no RUN step). */
  engine: DockerImageBuilder;
  /** Root of the builder's state: `store/` (its image store), `builds/` (buildah's), `work/`. */
  root: string;
  cpus: number;
  memoryBytes: number;
  timeoutMs: number;
  network: boolean;
  /** Size of each owner's build disk (`OciImageBuildOptions.diskBytes`). */
  diskBytes: number;
  /** Registries (`host[:port]`) reached over plain HTTP. */
  insecureRegistries: readonly string[];
  /** The engine's address when not the default socket (`DOCKER_HOST`). */
  daemonHost?: string;
  /** Minimum age of unused layers the store's garbage collection removes after a build (default 1 hour). */
  gcMinAgeMs?: number;
}

/** Layers of results and old bases stay at least this long (another build may be importing them). */
const DEFAULT_GC_MIN_AGE_MS = 3_600_000;

/**
 * Dockerfile builds on the docker driver as contained as on the oci driver: the daemonless
 * builder (buildah; `RUN` steps in a user namespace, no network unless allowed, CPU, memory, pids
 * and time limits) with an image store of its own, instead of the engine's builder (whose `RUN`
 * steps are root with default capabilities). `FROM` and `COPY --from` images come from the engine,
 * checked as the engine's builder checks them (`DockerImageBuilder.resolveBase`: pulled into the
 * engine first when missing), and copied into the store when it lacks them or the engine's image
 * changed, so builds work offline as before. The result is copied into the engine
 * (`skopeo copy … docker-daemon:`) as `corral.local/<owner>/<name>:<tag>`, where sandboxes find
 * it, and leaves the store. Transfers, renames and removes are the engine builder's.
 */
export class ContainedDockerImageBuilder implements ImageBuilder {
  private readonly store: ImageStore;
  private readonly inner: OciImageBuilder;

  constructor(private readonly options: ContainedDockerBuildOptions) {
    this.store = new ImageStore({ root: join(options.root, 'store'), insecureRegistries: options.insecureRegistries });
    this.inner = new OciImageBuilder({
      root: join(options.root, 'builds'),
      images: this.store,
      cpus: options.cpus,
      memoryBytes: options.memoryBytes,
      timeoutMs: options.timeoutMs,
      network: options.network,
      diskBytes: options.diskBytes,
      userns: DEFAULT_BUILD_USERNS,
      prepareBase: (reference, request) => this.baseFromEngine(reference, request),
    });
  }

  /** Why buildah cannot run here (not root, a tool missing), or undefined. */
  async unavailable(): Promise<string | undefined> {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'the server does not run as root (buildah\'s user namespaces and mounts need it)';
    const missing = await this.inner.unavailable();
    if (missing !== undefined) return missing;
    try {
      await runTool('runc', ['--version'], { timeoutMs: 10_000 });
    } catch {
      return "required tool 'runc' is not installed (Debian package 'runc'); run 'bash scripts/ensure-oci.sh' to install it";
    }
    return this.options.engine.unavailable();
  }

  async build(request: ImageBuildRequest): Promise<ImageBuildResult> {
    const built = await this.inner.build(request);
    const reference = built.reference;
    try {
      const record = await this.store.get(reference);
      if (!record) throw new Error(`${reference} is not in the image store`);
      request.onOutput(`corral: copying ${reference} into the Docker engine\n`);
      await exportImage(this.store, record, { kind: 'docker-daemon', reference, ...(this.options.daemonHost !== undefined ? { daemonHost: this.options.daemonHost } : {}) }, {
        workDir: join(this.options.root, 'work'),
        insecureRegistries: this.options.insecureRegistries,
        gzip: false,
      });
      const info = await this.options.docker.getImage(reference).inspect();
      const sizeBytes = typeof info.Size === 'number' ? info.Size : built.sizeBytes;
      request.onOutput(`corral: stored ${reference} in the engine (${info.Id}, ${sizeBytes} bytes)\n`);
      return { reference, digest: info.Id, sizeBytes };
    } catch (error) {
      throw new ImageBuildError(`copying ${reference} into the Docker engine failed: ${(error as Error).message.slice(-1500)}`, null, '');
    } finally {
      // The engine holds the result; the store keeps base images only.
      await this.store.remove(reference).catch(() => undefined);
      await this.store.gc([], this.options.gcMinAgeMs ?? DEFAULT_GC_MIN_AGE_MS).catch(() => undefined);
    }
  }

  transfer(request: ImageTransferRequest): Promise<ImageBuildResult> {
    return this.options.engine.transfer(request);
  }

  rename(from: string, to: string): Promise<string> {
    return this.options.engine.rename(from, to);
  }

  remove(reference: string): Promise<void> {
    return this.options.engine.remove(reference);
  }

  /**
   * Checks `reference` as the engine's builder does (pulling it into the engine when missing) and
   * copies the engine's image into the store when the store lacks it or the engine's changed.
   */
  private async baseFromEngine(reference: string, request: ImageBuildRequest): Promise<void> {
    const info = await this.options.engine.resolveBase(reference, request);
    const marker = join(this.options.root, 'engine-bases', createHash('sha256').update(reference).digest('hex').slice(0, 32));
    const known = await readFile(marker, 'utf8').catch(() => '');
    if (known === info.Id && (await this.store.get(reference)) !== undefined) return;
    request.onOutput(`corral: copying ${parseImageRef(reference).canonical} from the Docker engine\n`);
    try {
      await importFromDockerDaemon(this.store, reference, { workDir: join(this.options.root, 'work'), ...(this.options.daemonHost !== undefined ? { daemonHost: this.options.daemonHost } : {}) });
    } catch (error) {
      throw new ImageBuildError(`FROM ${reference}: copying it from the Docker engine failed: ${(error as Error).message.slice(-1500)}`, null, '');
    }
    await mkdir(join(marker, '..'), { recursive: true });
    await writeFile(`${marker}.tmp`, info.Id);
    await rename(`${marker}.tmp`, marker);
  }
}

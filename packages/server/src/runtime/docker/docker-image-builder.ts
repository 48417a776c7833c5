import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { posix } from 'node:path';
import { type Readable, PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type Docker from 'dockerode';
import tar from 'tar-stream';
import { scanDockerfileImages } from '../dockerfile-refs.js';
import { FAILURE_TAIL_BYTES, type ImageBuilder, ImageBuildError, type ImageBuildRequest, type ImageBuildResult, type ImageTransferRequest, OUTPUT_TAIL_BYTES } from '../image-builder.js';
import { type ImageRef, parseImageRef } from '../registry/image-ref.js';
import { RegistryAccessCheck } from '../registry/registry-access-check.js';
import { checkRegistryAddress } from '../registry/registry-address-policy.js';
import { RuntimeError } from '../runtime.js';
import { isCheckpointImage, namesCheckpointRepository } from './docker-checkpoints.js';
import { isNotFound } from './docker-exec.js';
import { pullImage, registrySource } from './image-pull.js';

/** Limits of builds on the docker driver. */
export interface DockerImageBuildOptions {
  docker: Docker;
  /** CPU cores a build's RUN steps may use. */
  cpus: number;
  /** Memory a build's RUN steps may use, in bytes (swap included). */
  memoryBytes: number;
  /** How long a build may take before it is cancelled. */
  timeoutMs: number;
  /** Whether RUN steps get the engine's default bridge network (default false: `none`, loopback only). */
  network: boolean;
  /** Registries (`host[:port]`) that may be at loopback or private addresses, reached over plain HTTP. */
  insecureRegistries: readonly string[];
}


/** One line of the engine's build or pull progress stream. */
interface ProgressLine {
  stream?: string;
  status?: string;
  id?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { ID?: string };
}

/** The step a legacy-builder log was at: its last `Step n/m : …` line. */
export function lastDockerStep(output: string): string | null {
  const steps = output.match(/^Step \d+\/\d+ : .*$/gm);
  return steps?.at(-1) ?? null;
}

/**
 * Builds Dockerfiles with Docker Engine's builder (the classic one, `POST /build` through
 * dockerode): RUN steps without network unless the operator allows it, with a memory limit (swap
 * included) and a CPU quota, cancelled at the deadline (the engine kills the running step when the
 * request goes). Every image the Dockerfile names (`FROM`, `COPY --from`, the `ONBUILD` triggers of
 * those) is checked before the engine sees it: a built image only by its owner, a registry image
 * present in the engine only when its registry still lets anonymous pulls through, a missing one
 * pulled first from a registry Corral may reach. The result is tagged
 * `corral.local/<owner>/<name>:<tag>` in the engine.
 */
export class DockerImageBuilder implements ImageBuilder {
  private readonly access: RegistryAccessCheck;

  constructor(private readonly options: DockerImageBuildOptions) {
    this.access = new RegistryAccessCheck({ insecureRegistries: options.insecureRegistries });
  }

  async unavailable(): Promise<string | undefined> {
    try {
      await this.options.docker.ping();
      return undefined;
    } catch (error) {
      return `the Docker engine does not answer: ${(error as Error).message}`;
    }
  }

  async build(request: ImageBuildRequest): Promise<ImageBuildResult> {
    const clean = `${request.contextTar}.clean.tar`;
    let output = '';
    const emit = (text: string): void => {
      output = (output + text).slice(-OUTPUT_TAIL_BYTES);
      request.onOutput(text);
    };
    try {
      const dockerfile = await cleanContext(request.contextTar, clean, request.dockerfilePath);
      await this.checkImages(dockerfile, request, emit);
      const reference = parseImageRef(request.reference).canonical;
      const { cpus, memoryBytes, timeoutMs, network } = this.options;
      const abort = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        abort.abort();
      }, timeoutMs);
      let failure: string | undefined;
      try {
        const stream = await this.options.docker.buildImage(createReadStream(clean), {
          t: reference,
          dockerfile: normalizePath(request.dockerfilePath),
          rm: true,
          forcerm: true,
          // The engine's layer cache is one for every user: a hit would hand one user the result of
          // another's RUN step (a generated key, say) for the same parent and command.
          nocache: true,
          networkmode: network ? 'bridge' : 'none',
          memory: memoryBytes,
          memswap: memoryBytes,
          cpuperiod: 100_000,
          cpuquota: Math.max(1000, Math.round(cpus * 100_000)),
          labels: { 'io.corral.built': 'true' },
          abortSignal: abort.signal,
        });
        failure = await follow(this.options.docker, stream, (line) => {
          if (line.stream) emit(line.stream);
          else if (line.status) emit(`${line.status}${line.id ? ` ${line.id}` : ''}\n`);
        });
      } catch (error) {
        failure = timedOut ? undefined : `the build failed: ${(error as Error).message}`;
      } finally {
        clearTimeout(timer);
      }
      const step = lastDockerStep(output);
      if (timedOut) {
        // The engine kills the running step when the request goes, in its own time: the step's
        // container (`Running in <id>` in the log) is removed here before the build is reported.
        const running = [...output.matchAll(/Running in ([0-9a-f]{12,64})/g)].at(-1)?.[1];
        if (running !== undefined) {
          await this.options.docker.getContainer(running).remove({ force: true }).catch((error: unknown) => {
            if (!isNotFound(error) && !/removal of container .* is already in progress/i.test(String(error))) throw error;
          });
          for (let i = 0; i < 100; i += 1) {
            const gone = await this.options.docker.getContainer(running).inspect().then(() => false, (error: unknown) => isNotFound(error));
            if (gone) break;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        const reason = `the build took longer than ${Math.round(timeoutMs / 1000)} s and was stopped`;
        throw new ImageBuildError(step ? `${reason} at ${step}` : reason, step, output.slice(-FAILURE_TAIL_BYTES));
      }
      if (failure !== undefined) {
        const reason = `the build failed: ${failure.trim()}`;
        throw new ImageBuildError(step ? `${reason} at ${step}` : reason, step, output.slice(-FAILURE_TAIL_BYTES));
      }
      const info = await this.options.docker.getImage(reference).inspect();
      const sizeBytes = typeof info.Size === 'number' ? info.Size : 0;
      emit(`corral: stored ${reference} (${info.Id}, ${sizeBytes} bytes)\n`);
      return { reference, digest: info.Id, sizeBytes };
    } catch (error) {
      if (error instanceof ImageBuildError) throw error;
      throw new ImageBuildError((error as Error).message.slice(-2000), lastDockerStep(output), output.slice(-FAILURE_TAIL_BYTES));
    } finally {
      await rm(clean, { force: true });
    }
  }

  /** Checks (and pulls, when missing) every image the Dockerfile names, before the engine resolves any of them. */
  private async checkImages(dockerfile: string, request: ImageBuildRequest, emit: (text: string) => void): Promise<void> {
    const { images, unresolved } = scanDockerfileImages(dockerfile);
    const first = unresolved[0];
    if (first !== undefined) {
      throw new ImageBuildError(`FROM ${first}: an image named by a build argument needs a default in an ARG before the first FROM on the docker driver`, null, '');
    }
    for (const image of images) {
      emit(`corral: resolving ${image}\n`);
      const info = await this.resolveBase(image, request);
      const triggers = info.Config?.OnBuild ?? [];
      if (triggers.some((t) => /--from/i.test(t))) {
        throw new ImageBuildError(`FROM ${image}: its ONBUILD triggers copy from other images, which the docker driver does not allow`, null, '');
      }
    }
  }

  /**
   * The engine's image for a `FROM` or `COPY --from` reference, checked as every build checks it:
   * no image ids, the build's owner may use it (`mayUseBase`), one the engine holds only while its
   * registry lets an anonymous pull through, a missing one pulled into the engine first from a
   * registry Corral may reach, and found under that very name. Rejects with {@link ImageBuildError}.
   */
  async resolveBase(image: string, request: Pick<ImageBuildRequest, 'mayUseBase' | 'baseCredentials'>): Promise<Docker.ImageInspectInfo> {
    let ref: ImageRef;
    try {
      // An image id (`FROM 0123abcd…`) would let a build read any image in the engine.
      if (/^(?:sha256:)?[0-9a-f]{12,64}$/i.test(image)) throw new Error('images are named by reference, not by id');
      ref = parseImageRef(image);
    } catch (error) {
      throw new ImageBuildError(`FROM ${image}: ${(error as Error).message}`, null, '');
    }
    if (!(await request.mayUseBase(ref.canonical))) throw new ImageBuildError(`FROM ${image}: no such image`, null, '');
    const credentials = await request.baseCredentials?.(ref.canonical);
    let info = await this.inspect(ref.canonical);
    // Checkpoints' images are restored by checkpoint id, never built on.
    if (namesCheckpointRepository(ref) || (info !== undefined && isCheckpointImage(info))) throw new ImageBuildError(`FROM ${image}: no such image`, null, '');
    if (info === undefined) {
      if (ref.registry === 'corral.local') throw new ImageBuildError(`FROM ${image}: no such image`, null, '');
      try {
        await checkRegistryAddress(ref.registry, this.options.insecureRegistries);
        // Corral's own client tries the credentials first: it sends them only to that registry.
        if (credentials) await this.access.check(ref, credentials);
        await pullImage(this.options.docker, ref.canonical, credentials ? { ...credentials, serverAddress: ref.registry } : undefined);
      } catch (error) {
        throw new ImageBuildError(`FROM ${image}: not in the engine and not pullable: ${(error as Error).message}`, null, '');
      }
      info = await this.inspect(ref.canonical);
      if (info === undefined) throw new ImageBuildError(`FROM ${image}: missing after the pull`, null, '');
    } else {
      const source = registrySource(info, ref);
      if (source) {
        try {
          await this.access.check(source, credentials);
        } catch (error) {
          throw new ImageBuildError(`FROM ${image}: ${(error as Error).message}`, null, '');
        }
      }
    }
    // The engine found it under this very name (a tag or a digest it holds), not some other way.
    const names = [...(info.RepoTags ?? []), ...(info.RepoDigests ?? [])].flatMap((n) => {
      try {
        return [parseImageRef(n).canonical];
      } catch {
        return [];
      }
    });
    if (!names.includes(ref.canonical)) throw new ImageBuildError(`FROM ${image}: no such image`, null, '');
    return info;
  }

  private async inspect(reference: string): Promise<Docker.ImageInspectInfo | undefined> {
    try {
      return await this.options.docker.getImage(reference).inspect();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async transfer(request: ImageTransferRequest): Promise<ImageBuildResult> {
    let source: ImageRef;
    try {
      source = parseImageRef(request.source);
    } catch (error) {
      throw new ImageBuildError(`source_image ${request.source}: ${(error as Error).message}`, null, '');
    }
    if (source.registry === 'corral.local') throw new ImageBuildError(`source_image ${request.source}: built images are not transferred; build it again or use it as it is`, null, '');
    const reference = parseImageRef(request.reference);
    const had = await this.inspect(source.canonical);
    try {
      await checkRegistryAddress(source.registry, this.options.insecureRegistries);
      request.onOutput(`corral: pulling ${source.canonical}\n`);
      await pullImage(
        this.options.docker,
        source.canonical,
        request.credentials ? { ...request.credentials, serverAddress: source.registry } : undefined,
      );
    } catch (error) {
      const message = error instanceof RuntimeError ? error.message : String(error);
      throw new ImageBuildError(`the registry did not give ${source.canonical}: ${message}`, null, '');
    }
    const repo = reference.canonical.slice(0, reference.canonical.length - reference.tag.length - 1);
    await this.options.docker.getImage(source.canonical).tag({ repo, tag: reference.tag });
    // A source pulled only for this copy does not stay under its registry name.
    if (had === undefined) await this.options.docker.getImage(source.canonical).remove({ noprune: true }).catch(() => undefined);
    const info = await this.options.docker.getImage(reference.canonical).inspect();
    const sizeBytes = typeof info.Size === 'number' ? info.Size : 0;
    request.onOutput(`corral: stored ${reference.canonical} (${info.Id}, ${sizeBytes} bytes)\n`);
    return { reference: reference.canonical, digest: info.Id, sizeBytes };
  }

  async rename(from: string, to: string): Promise<string> {
    const target = parseImageRef(to);
    const repo = target.canonical.slice(0, target.canonical.length - target.tag.length - 1);
    await this.options.docker.getImage(parseImageRef(from).canonical).tag({ repo, tag: target.tag });
    await this.options.docker.getImage(parseImageRef(from).canonical).remove({ noprune: true });
    return (await this.options.docker.getImage(target.canonical).inspect()).Id;
  }

  async remove(reference: string): Promise<void> {
    try {
      await this.options.docker.getImage(parseImageRef(reference).canonical).remove({ noprune: false });
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
}

/** Follows a build stream to its end: the engine's error, if it reported one. */
function follow(docker: Docker, stream: NodeJS.ReadableStream, onLine: (line: ProgressLine) => void): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    let failure: string | undefined;
    docker.modem.followProgress(
      stream,
      (error: Error | null) => (error ? reject(error) : resolve(failure)),
      (line: ProgressLine) => {
        const text = line.errorDetail?.message ?? line.error;
        if (text !== undefined) failure = text;
        onLine(line);
      },
    );
  });
}

function normalizePath(path: string): string {
  return posix.normalize(path).replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}

/** The decompressed tar stream of an uploaded context (plain, gzip or zstd, told by the magic number). */
async function openContext(path: string): Promise<Readable> {
  const head = Buffer.alloc(4);
  const file = await open(path, 'r');
  try {
    await file.read(head, 0, 4, 0);
  } finally {
    await file.close();
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return createReadStream(path).pipe(createGunzip());
  if (head.readUInt32LE(0) === 0xfd2fb528) {
    const child = spawn('zstd', ['--decompress', '--stdout', '--quiet', path], { stdio: ['ignore', 'pipe', 'ignore'] });
    const out = new PassThrough();
    child.once('error', (error) => out.destroy(error));
    child.once('close', (code) => code !== 0 && out.destroy(new Error(`zstd exit ${code ?? 'signal'}`)));
    child.stdout.pipe(out);
    return out;
  }
  return createReadStream(path);
}

/**
 * Copies the uploaded context into a plain tar the engine reads: files, directories and links
 * only (a device node or fifo refuses the context, as on the oci driver), owners dropped, no
 * member with `..`. Returns the Dockerfile's text; a Dockerfile that is missing or a link is refused.
 */
async function cleanContext(contextTar: string, out: string, dockerfilePath: string): Promise<string> {
  const wanted = normalizePath(dockerfilePath);
  let dockerfile: string | undefined;
  const extract = tar.extract();
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(out, { mode: 0o600 }));
  try {
    const input = await openContext(contextTar);
    const reading = pipeline(input, extract);
    // Awaited below; a member refused first ends the loop while the pipeline still reads.
    reading.catch(() => undefined);
    for await (const entry of extract) {
      const h = entry.header;
      const name = normalizePath(h.name);
      if (name.split('/').includes('..') || h.name.startsWith('/')) throw new Error(`member ${h.name} points outside the context`);
      const type = h.type === 'contiguous-file' ? 'file' : h.type;
      if (type !== 'file' && type !== 'directory' && type !== 'symlink' && type !== 'link') throw new Error(`member ${h.name} is a ${h.type ?? 'special file'}`);
      const header: Partial<tar.Header> & { name: string } = { name: h.name, type, mode: (h.mode ?? 0o644) & 0o777, mtime: h.mtime ?? new Date(0), uid: 0, gid: 0 };
      if (type === 'symlink' || type === 'link') header.linkname = h.linkname ?? '';
      if (type === 'file') {
        const chunks: Buffer[] = [];
        const isDockerfile = name === wanted;
        let size = 0;
        let finished!: Promise<void>;
        const body = new Promise<ReturnType<typeof pack.entry>>((ready) => {
          finished = new Promise<void>((resolve, reject) => {
            ready(pack.entry({ ...header, size: h.size ?? 0 }, (error) => (error ? reject(error) : resolve())));
          });
        });
        const sink = await body;
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          if (isDockerfile && size < 1024 * 1024) chunks.push(chunk);
          size += chunk.length;
          if (!sink.write(chunk)) await new Promise<void>((r) => sink.once('drain', () => r()));
        }
        sink.end(undefined);
        await finished;
        if (isDockerfile) dockerfile = Buffer.concat(chunks).toString('utf8');
      } else {
        entry.resume();
        pack.entry(header);
      }
    }
    await reading;
  } catch (error) {
    extract.destroy();
    pack.destroy();
    await written.catch(() => undefined);
    throw new ImageBuildError(`the build context is not a readable tar archive: ${(error as Error).message.slice(-500)}`, null, '');
  }
  pack.finalize();
  await written;
  if (dockerfile === undefined) throw new ImageBuildError(`the build context has no file ${dockerfilePath}`, null, '');
  return dockerfile;
}

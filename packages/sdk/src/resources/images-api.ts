import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { packBuildContext } from '../build-context.js';
import { CorralError, ImageBuildFailedError } from '../errors.js';
import type {
  DeleteImagesImageNameImageTagResponse,
  GetImagesBuildBuildIdLogsResponse,
  GetImagesBuildBuildIdResponse,
  GetImagesBuildsQuery,
  GetImagesBuildsResponse,
  GetImagesQuery,
  GetImagesResponse,
  PostImagesBuildResponse,
  PutImagesBuildBuildIdContextResponse,
} from '../generated/api.js';
import { type HttpTransport, connectionError, controlPlaneError, parseJson } from '../http.js';
import { retryAfterSeconds, sleep } from '../retry.js';

const seg = encodeURIComponent;


/** The answer to a Dockerfile build request (not a transfer). */
type DockerfileBuildResponse = Extract<PostImagesBuildResponse, { build_id: string }>;
/** What {@link ImagesApi.build} builds. */
export interface ImageBuildOptions {
  /** The build context directory (what `COPY` reads). */
  context: string;
  /** The Dockerfile, relative to the working directory or absolute. Default `<context>/Dockerfile`. */
  dockerfile?: string;
  /** Image name, e.g. `myapp`. */
  name: string;
  /** Image tag. Default `latest`. */
  tag?: string;
  /** Build as this team's image (its members may use it). */
  teamId?: string;
  /** Receives the build's output as it comes, each piece once. */
  onLog?: (text: string) => void;
  /** Aborts the wait (the build goes on on the server). */
  signal?: AbortSignal;
  /** Longest pause between two status reads while the build runs, ms. Default 1000. */
  maxPollIntervalMs?: number;
}

/** The build statuses after which a build does not change. */
const FINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/**
 * Prime's images API (`/images`, `/images/build…`) and Corral's build log: build an image from a
 * Dockerfile and a context directory, list, inspect and delete images.
 *
 * @example
 * ```ts
 * const image = await client.images.build({ context: './app', name: 'myapp', tag: 'v1', onLog: (t) => process.stderr.write(t) });
 * const sandbox = await Sandbox.create(client, { image });
 * ```
 */
export class ImagesApi {
  constructor(private readonly http: HttpTransport) {}

  /**
   * Builds an image: packs `context` (honouring `.dockerignore`), asks for a build
   * (`POST /images/build`), uploads the context to the signed `upload_url`, starts it, follows its
   * log (`onLog` gets only new output) and waits for its end, polling with a short backoff (100 ms
   * doubling up to `maxPollIntervalMs`). Returns the image reference to pass as a sandbox's image
   * (`corral.local/<owner>/<name>:<tag>`).
   *
   * Throws {@link BuildContextError} when the context or Dockerfile cannot be read (nothing is
   * sent), {@link ImageBuildFailedError} (with `failedStep` and `errorMessage`) when the build fails,
   * and the usual typed errors for refused requests.
   */
  async build(options: ImageBuildOptions): Promise<string> {
    const tag = options.tag ?? 'latest';
    const packed = await packBuildContext(options.context, options.dockerfile);
    let initiated: DockerfileBuildResponse;
    try {
      const answer = await this.http.call<PostImagesBuildResponse>('POST', '/images/build', {
        body: { image_name: options.name, image_tag: tag, dockerfile_path: packed.dockerfilePath, platform: 'linux/amd64', ...(options.teamId ? { team_id: options.teamId } : {}) },
        operation: 'PostImagesBuild',
        signal: options.signal,
      });
      // A Dockerfile build answers with its upload URL; the other shape is the bulk transfer's.
      if (!('build_id' in answer) || answer.upload_url === '') {
        throw new Error('the server answered a Dockerfile build without an upload URL (a transfer result); is it a Corral server?');
      }
      initiated = answer;
      await this.upload(initiated.upload_url, packed.file, packed.bytes, options.signal);
    } finally {
      await packed.dispose();
    }
    const id = initiated.build_id;
    await this.http.call('POST', `/images/build/${seg(id)}/start`, { body: { context_uploaded: true }, operation: 'PostImagesBuildBuildIdStart', signal: options.signal });
    const final = await this.waitForBuild(id, options);
    if (final.status !== 'COMPLETED') throw new ImageBuildFailedError(id, `${options.name}:${tag}`, final);
    return final.fullImagePath;
  }

  /** Polls until the build ends, passing new log output to `onLog`; the final status. */
  private async waitForBuild(id: string, options: ImageBuildOptions): Promise<GetImagesBuildBuildIdResponse> {
    const maxInterval = options.maxPollIntervalMs ?? 1000;
    let printed = 0;
    let interval = 100;
    for (;;) {
      let status: string;
      if (options.onLog) {
        // The log answer carries the status too: one request a round while following it.
        const { logs, status: current } = await this.logs(id, options.signal);
        if (logs.length > printed) {
          options.onLog(logs.slice(printed));
          printed = logs.length;
          interval = 100;
        }
        status = current;
      } else {
        status = (await this.get(id, options.signal)).status;
      }
      if (FINAL.has(status)) {
        if (options.onLog) {
          // Output written between the last read and the end.
          const { logs } = await this.logs(id, options.signal);
          if (logs.length > printed) options.onLog(logs.slice(printed));
        }
        return this.get(id, options.signal);
      }
      await sleep(interval, options.signal);
      interval = Math.min(maxInterval, interval * 2);
    }
  }

  /** PUTs the context tarball to the signed upload URL (no API key: the signature is the grant). */
  private async upload(url: string, file: string, bytes: number, signal: AbortSignal | undefined): Promise<PutImagesBuildBuildIdContextResponse> {
    let response: Response;
    let text: string;
    try {
      response = await this.http.options.fetch(url, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes), 'user-agent': this.http.options.userAgent },
        body: Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>,
        duplex: 'half',
        ...(signal ? { signal } : {}),
      } as RequestInit);
      text = await response.text();
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw connectionError(this.http.options.apiUrl, error, 'PUT <upload_url>');
    }
    const parsed = parseJson(text);
    if (response.status === 413) {
      const detail = typeof parsed === 'object' && parsed !== null && typeof (parsed as { detail?: unknown }).detail === 'string' ? (parsed as { detail: string }).detail : text.slice(0, 300);
      throw new CorralError(
        `The build context (${bytes} bytes packed) is over the server's limit: ${detail}. List what the build does not need (node_modules, .git, data) in .dockerignore, or ask the operator to raise CORRAL_IMAGE_BUILD_CONTEXT_MAX_BYTES.`,
        { status: 413, code: 'PAYLOAD_TOO_LARGE' },
      );
    }
    if (response.status === 403) {
      throw new CorralError('The upload URL was refused (expired or altered). Build again: each build gets a fresh upload URL, valid for CORRAL_IMAGE_BUILD_UPLOAD_TTL_SECONDS.', {
        status: 403,
        code: 'UPLOAD_URL_INVALID',
      });
    }
    if (!response.ok) throw controlPlaneError(response.status, parsed, text, retryAfterSeconds(response.headers.get('retry-after')));
    return parsed as PutImagesBuildBuildIdContextResponse;
  }

  /** `GET /images`: your images (and builds not finished), newest first. */
  list(query: GetImagesQuery = {}): Promise<GetImagesResponse> {
    return this.http.call('GET', '/images', { query, operation: 'GetImages' });
  }

  /** `GET /images/builds`: your builds, newest first. */
  builds(query: GetImagesBuildsQuery = {}): Promise<GetImagesBuildsResponse> {
    return this.http.call('GET', '/images/builds', { query, operation: 'GetImagesBuilds' });
  }

  /** `GET /images/build/{id}`: a build's status, timings, `failedStep` and `errorMessage`. */
  get(buildId: string, signal?: AbortSignal): Promise<GetImagesBuildBuildIdResponse> {
    return this.http.call('GET', `/images/build/${seg(buildId)}`, { operation: 'GetImagesBuildBuildId', signal });
  }

  /** `GET /images/build/{id}/logs` (Corral): the builder's output so far (at most 4 MiB) and the status. */
  logs(buildId: string, signal?: AbortSignal): Promise<GetImagesBuildBuildIdLogsResponse> {
    return this.http.call('GET', `/images/build/${seg(buildId)}/logs`, { operation: 'GetImagesBuildBuildIdLogs', signal });
  }

  /** `DELETE /images/{name}/{tag}`: a team's image with `teamId`. */
  delete(name: string, tag: string, options: { teamId?: string } = {}): Promise<DeleteImagesImageNameImageTagResponse> {
    return this.http.call('DELETE', `/images/${seg(name)}/${seg(tag)}`, { query: { teamId: options.teamId }, operation: 'DeleteImagesImageNameImageTag' });
  }
}

import type { CorralMetrics } from './corral-metrics.js';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { appendFile, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { CorralConfig } from '../config.js';
import { ApiError } from '../errors/api-error.js';
import type { ErrorCode } from '../errors/error-codes.js';
import type { ImageArtifactRecord, ImageBuildRecord, ImageBuildStatus, ImageVisibility } from '../records/image-records.js';
import { ImageBuildError } from '../runtime/image-builder.js';
import { normalizeRegistryHost, parseImageRef } from '../runtime/registry/image-ref.js';
import { RegistryClient } from '../runtime/registry/registry-client.js';
import type { SandboxRuntime } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import { newId } from '../util/ids.js';
import { nowIso } from '../util/time.js';
import type { Principal } from './auth-service.js';
import type { RegistryCredentialsService } from './registry-credentials-service.js';

/** The registry host of built images: `docker_image` names them `corral.local/<owner>/<name>:<tag>`. Nothing is ever pulled from it. */
export const BUILT_IMAGE_REGISTRY = 'corral.local';

/** Prime's image names: lower-case path components separated by `/`, each of alphanumerics joined by `.`, `_` or `-`. */
const IMAGE_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;
const IMAGE_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
/** Output of one build kept on disk for `GET /images/build/{id}/logs`. */
const MAX_LOG_BYTES = 4 * 1024 * 1024;

/** What `POST /images/build` asks for. */
export interface InitiateBuildInput {
  imageName: string | null;
  imageTag: string | null;
  dockerfilePath: string;
  sourceImage: string | null;
  platform: string;
  teamId: string | null;
  visibility: string | null;
  ownerScope: string | null;
}

/** A build just initiated, with where to upload its context. */
export interface InitiatedBuild {
  build: ImageBuildRecord;
  uploadPath: string;
  expiresIn: number;
}

/** A build or transfer waiting for a slot; a transfer's source (and credentials) live only here. */
interface QueuedBuild {
  id: string;
  caller: Principal;
  transfer?: { source: string; credentials?: { username: string; password: string } };
}

/** What `POST /images/build` with `source_image` asks for: one or more (comma-separated) images to copy. */
export interface TransferInput extends Omit<InitiateBuildInput, 'sourceImage' | 'dockerfilePath'> {
  sources: string[];
  registryCredentialsId: string | null;
}

/** One source of a transfer: queued (its build), or refused (why). */
export type TransferOutcome =
  | { sourceImage: string; success: true; build: ImageBuildRecord }
  | { sourceImage: string; success: false; error: string };

/** An image's owner as Prime's `PATCH /images` names it. */
export type ImageOwnerRef = { type: 'personal' } | { type: 'team'; teamId: string } | { type: 'platform' };

/** One item of `PATCH /images`: which image, and what to change. */
export interface ImageUpdateItem {
  source: { owner?: ImageOwnerRef; name?: string; tag?: string; reference?: string };
  set: { name?: string; tag?: string; owner?: ImageOwnerRef; visibility?: 'PRIVATE' | 'PUBLIC' };
}

/** An image's coordinates as `PATCH /images` reports them. */
export interface ImageCoordinates {
  owner: ImageOwnerRef;
  name: string;
  tag: string;
  visibility: 'PRIVATE' | 'PUBLIC';
}

/** The outcome of one `PATCH /images` item. */
export interface ImageUpdateOutcome {
  success: boolean;
  before: ImageCoordinates | null;
  after: ImageCoordinates | null;
  error: { code: string; message: string } | null;
}

/** A failure of one `PATCH /images` item (it does not fail the others), with a code of docs/errors.md. */
class ItemError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A row of `GET /images`: a built image, or a build that has not finished. */
export type ImageListRow = { kind: 'artifact'; artifact: ImageArtifactRecord } | { kind: 'build'; build: ImageBuildRecord };

/** Whether a caller may use an image owned by `userId`/`teamId` (its owner, or a member of its team). */
function coordinates(a: ImageArtifactRecord): ImageCoordinates {
  return { owner: a.teamId === null ? { type: 'personal' } : { type: 'team', teamId: a.teamId }, name: a.imageName, tag: a.imageTag, visibility: a.visibility };
}

function validName(name: string): boolean {
  return name.length <= 128 && IMAGE_NAME.test(name);
}

/** Whether a caller owns an image (its owner, or a member of its team): may change, rename or delete it. */
function mayUse(caller: Principal, owner: { userId: string; teamId: string | null }): boolean {
  return owner.teamId === null ? owner.userId === caller.user.id : caller.teams.has(owner.teamId);
}

/** Whether a caller may run or build on an image: its owners, and everyone once it is PUBLIC. */
function mayRun(caller: Principal, artifact: ImageArtifactRecord): boolean {
  return artifact.visibility === 'PUBLIC' || mayUse(caller, artifact);
}

/** Prime's build-time visibility: `PRIVATE`/`PUBLIC` as asked; `INHERIT` (or none) keeps the tag's current one, else PRIVATE. */
function visibilityOf(requested: string | null, existing: ImageArtifactRecord | undefined): ImageVisibility {
  if (requested === 'PRIVATE' || requested === 'PUBLIC') return requested;
  return existing?.visibility ?? 'PRIVATE';
}

/** Whether saved registry credentials are for `registry` (a normalized `host[:port]`). */
function serves(credentials: { server: string }, registry: string): boolean {
  try {
    return normalizeRegistryHost(credentials.server) === registry;
  } catch {
    return false;
  }
}

/**
 * The caller's saved credentials for `registry`: those of the build's scope first (the team's for a
 * team build, the caller's own otherwise), then any other they may use.
 */
function pickCredentials<T extends { server: string; teamId: string | null }>(mine: readonly T[], teamId: string | null, registry: string): T | undefined {
  const fits = (c: T): boolean => serves(c, registry);
  return mine.filter((c) => (teamId === null ? c.teamId === null : c.teamId === teamId)).find(fits) ?? mine.find(fits);
}

/** True for references in the built-image namespace (`corral.local/…`). */
export function isBuiltImageRef(reference: string): boolean {
  try {
    return parseImageRef(reference).registry.toLowerCase() === BUILT_IMAGE_REGISTRY;
  } catch {
    return false;
  }
}

/**
 * Dockerfile builds and the images they make, through the runtime driver's builder: initiate
 * (a signed, short-lived upload URL served by Corral), upload (streamed to disk, size-capped),
 * start (queued, at most `imageBuildConcurrency` at once), status, logs, list and delete. A built
 * image is usable as `docker_image` by its owner (a team image: by the team's members); to anyone
 * else it does not exist.
 */
export class ImageService {
  private readonly dir: string;
  private readonly queue: QueuedBuild[] = [];
  private running = 0;
  private readonly active = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly runtime: SandboxRuntime | null,
    private readonly config: CorralConfig,
    private readonly registryCredentials: RegistryCredentialsService,
    private readonly uploadSecret: string,
    private readonly log: Logger,
    private readonly metrics?: CorralMetrics,
  ) {
    this.dir = join(config.dataDir, 'image-builds');
    if (metrics) metrics.sources.imageBuilds = () => ({ queued: this.queue.length, running: this.running });
  }

  private builder(): NonNullable<SandboxRuntime['imageBuilder']> {
    const builder = this.runtime?.imageBuilder;
    if (!builder) {
      const how = this.runtime?.name === 'kubernetes' ? 'set CORRAL_K8S_IMAGE_REGISTRY (host[:port]/prefix: the registry the cluster pulls built images from)' : 'use CORRAL_RUNTIME=oci';
      throw new ApiError('NOT_IMPLEMENTED', `Image builds are not available on the ${this.runtime?.name ?? 'none'} runtime driver (${how})`);
    }
    return builder;
  }

  /** The checks every build and transfer makes of its owner and options; the owner's path segment. */
  private async checkTarget(caller: Principal, input: Pick<InitiateBuildInput, 'ownerScope' | 'visibility' | 'platform' | 'teamId'>): Promise<void> {
    if (input.ownerScope !== null) throw new ApiError('NOT_IMPLEMENTED', 'ownerScope "platform" images are not supported');
    if (input.visibility !== null && !['INHERIT', 'PRIVATE', 'PUBLIC'].includes(input.visibility)) throw ApiError.invalid('visibility', 'must be INHERIT, PRIVATE or PUBLIC');
    if (input.platform !== 'linux/amd64') throw ApiError.invalid('platform', 'only linux/amd64 is supported');
    if (input.teamId !== null && !caller.teams.has(input.teamId)) throw new ApiError('FORBIDDEN', `You are not a member of team ${input.teamId}`);
    const missing = await this.builder().unavailable();
    if (missing !== undefined) throw new ApiError('SERVICE_UNAVAILABLE', `Image builds cannot run on this host: ${missing}`);
  }

  private async newBuild(caller: Principal, teamId: string | null, name: string, tag: string, dockerfilePath: string, visibility: string | null): Promise<ImageBuildRecord> {
    const owner = teamId === null ? caller.user.id : `team-${teamId}`;
    const fullImagePath = `${BUILT_IMAGE_REGISTRY}/${owner}/${name}:${tag}`;
    return {
      id: newId(),
      userId: caller.user.id,
      teamId,
      imageName: name,
      imageTag: tag,
      dockerfilePath,
      fullImagePath,
      status: 'PENDING',
      contextBytes: null,
      failedStep: null,
      errorMessage: null,
      createdAt: nowIso(),
      startedAt: null,
      completedAt: null,
      replicaId: null,
      visibility: visibilityOf(visibility, await this.store.getImageArtifactByPath(fullImagePath)),
    };
  }

  /** Creates a build waiting for its context. */
  async initiate(caller: Principal, input: InitiateBuildInput): Promise<InitiatedBuild> {
    if (input.sourceImage !== null) throw ApiError.invalid('source_image', 'a transfer has no Dockerfile build: use transfer()');
    if (input.imageName === null || !validName(input.imageName)) {
      throw ApiError.invalid('image_name', 'must be 1-128 lower-case letters, digits and separators (. _ - /), e.g. "myapp"');
    }
    if (input.imageTag === null || !IMAGE_TAG.test(input.imageTag)) throw ApiError.invalid('image_tag', 'must be 1-128 letters, digits, _ . - (not starting with . or -)');
    const path = input.dockerfilePath;
    if (path === '' || path.length > 1024 || path.startsWith('/') || path.split('/').includes('..') || path.includes('\0')) {
      throw ApiError.invalid('dockerfile_path', 'must be a relative path inside the build context');
    }
    await this.checkTarget(caller, input);
    const build = await this.newBuild(caller, input.teamId, input.imageName, input.imageTag, path, input.visibility);
    await this.store.insertImageBuild(build);
    const ttl = this.config.imageBuildUploadTtlSeconds;
    const expires = Math.floor(Date.now() / 1000) + ttl;
    const uploadPath = `/api/v1/images/build/${build.id}/context?expires=${expires}&signature=${this.sign(build.id, expires)}`;
    return { build, uploadPath, expiresIn: ttl };
  }

  /**
   * Queues copies of existing images (`source_image`, one or more) into the driver's store as
   * `corral.local/<owner>/<name>:<tag>`: the name defaults to the source repository's last
   * component, the tag to the source's. The user's registry credentials for the source's registry
   * go with the pull (`registryCredentialsId`, else the caller's (or the team's) credentials for
   * that server). A source that is not a valid reference is refused alone.
   */
  async transfer(caller: Principal, input: TransferInput): Promise<TransferOutcome[]> {
    if (input.sources.length === 0) throw ApiError.invalid('source_image', 'names no image');
    if (input.sources.length > 20) throw ApiError.invalid('source_image', 'at most 20 images at once');
    if (input.sources.length > 1 && (input.imageName !== null || input.imageTag !== null)) {
      throw ApiError.invalid('image_name', 'image_name and image_tag name a single transfer; leave them out for several sources');
    }
    await this.checkTarget(caller, input);
    let chosen: { username: string; password: string; server: string } | undefined;
    if (input.registryCredentialsId !== null) {
      const record = await this.registryCredentials.usable(caller, input.registryCredentialsId);
      if (!record) throw ApiError.invalid('registry_credentials_id', `no registry credentials ${input.registryCredentialsId} that you may use`);
      chosen = record;
    }
    const mine = chosen ? [] : await this.store.listRegistryCredentials(caller.user.id, [...caller.teams.keys()]);
    const outcomes: TransferOutcome[] = [];
    for (const sourceImage of input.sources) {
      let ref;
      try {
        ref = parseImageRef(sourceImage);
      } catch (error) {
        if (input.sources.length === 1) throw ApiError.invalid('source_image', `${sourceImage}: ${(error as Error).message}`);
        outcomes.push({ sourceImage, success: false, error: `invalid image reference: ${(error as Error).message}` });
        continue;
      }
      const name = input.imageName ?? ref.repository.split('/').at(-1) ?? '';
      const tag = input.imageTag ?? (ref.digest !== undefined ? `sha256-${ref.digest.replace(/^sha256:/, '').slice(0, 16)}` : ref.tag);
      const reserved = this.runtime?.imageBuilder?.refusal?.(sourceImage);
      const refusal =
        ref.registry.toLowerCase() === BUILT_IMAGE_REGISTRY
          ? 'built images are already in the store: use them as they are'
          : reserved !== undefined
            ? reserved
          : !validName(name)
            ? `image name ${name} is not valid`
            : !IMAGE_TAG.test(tag)
              ? `image tag ${tag} is not valid`
              : undefined;
      if (refusal !== undefined) {
        if (input.sources.length === 1) throw ApiError.invalid('source_image', `${sourceImage}: ${refusal}`);
        outcomes.push({ sourceImage, success: false, error: refusal });
        continue;
      }
      const credentials = chosen ?? pickCredentials(mine, input.teamId, ref.registry);
      if (chosen && !serves(chosen, ref.registry)) {
        throw ApiError.invalid('registry_credentials_id', `the credentials are for ${chosen.server}, not for ${ref.registry}; they are not sent there`);
      }
      const build = { ...(await this.newBuild(caller, input.teamId, name, tag, '', input.visibility)), contextBytes: 0, replicaId: this.config.replicaId };
      await this.store.insertImageBuild(build);
      this.queue.push({ id: build.id, caller, transfer: { source: ref.canonical, ...(credentials ? { credentials: { username: credentials.username, password: credentials.password } } : {}) } });
      outcomes.push({ sourceImage, success: true, build });
    }
    this.pump();
    return outcomes;
  }

  private sign(buildId: string, expires: number): string {
    return createHmac('sha256', this.uploadSecret).update(`image-context\0${buildId}\0${expires}`).digest('base64url');
  }

  /**
   * Stores a build's context from an upload URL: refused (403) when the signature does not match
   * or the URL expired, 413 past the size cap (also when a declared length says so up front).
   */
  async upload(buildId: string, expires: string, signature: string, declaredLength: number | undefined, body: Readable): Promise<{ bytes: number }> {
    const expiresAt = Number(expires);
    const expected = Buffer.from(this.sign(buildId, Number.isSafeInteger(expiresAt) ? expiresAt : -1));
    const given = Buffer.from(signature);
    if (!/^\d{1,12}$/.test(expires) || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ApiError('UPLOAD_URL_INVALID', 'The upload URL is not valid (its signature does not match)');
    }
    if (expiresAt < Date.now() / 1000) throw new ApiError('UPLOAD_URL_INVALID', 'The upload URL has expired; start a new build');
    const build = await this.store.getImageBuild(buildId);
    if (!build) throw new ApiError('IMAGE_BUILD_NOT_FOUND', `Image build ${buildId} not found`);
    if (build.status !== 'PENDING' || this.queue.some((q) => q.id === buildId)) throw new ApiError('CONFLICT', `Image build ${buildId} has already started (${build.status})`);
    const max = this.config.imageBuildContextMaxBytes;
    if (declaredLength !== undefined && declaredLength > max) throw new ApiError('PAYLOAD_TOO_LARGE', `The build context is ${declaredLength} bytes, more than the ${max} allowed`);
    const dir = join(this.dir, buildId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const partial = join(dir, `context.${process.pid}.${Date.now()}.part`);
    let bytes = 0;
    try {
      await pipeline(
        body,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            bytes += chunk.length;
            if (bytes > max) throw new ApiError('PAYLOAD_TOO_LARGE', `The build context is larger than the ${max} bytes allowed`);
            yield chunk;
          }
        },
        createWriteStream(partial, { mode: 0o600 }),
      );
      await rename(partial, join(dir, 'context.tar'));
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
    await this.store.updateImageBuild(buildId, { contextBytes: bytes, replicaId: this.config.replicaId }, ['PENDING']);
    return { bytes };
  }

  /** A build the caller may see. */
  async get(caller: Principal, id: string): Promise<ImageBuildRecord> {
    const build = await this.store.getImageBuild(id);
    if (!build || !mayUse(caller, build)) throw new ApiError('IMAGE_BUILD_NOT_FOUND', `Image build ${id} not found`);
    return build;
  }

  /** Queues an uploaded build; it runs when a slot is free. */
  async start(caller: Principal, id: string): Promise<ImageBuildRecord> {
    const build = await this.get(caller, id);
    if (build.status !== 'PENDING' || this.queue.some((q) => q.id === id)) return build;
    if (build.contextBytes === null) throw new ApiError('CONFLICT', `Upload the build context to the upload_url of build ${id} before starting it`);
    if (build.replicaId !== this.config.replicaId) {
      throw new ApiError('CONFLICT', `The context of build ${id} was uploaded to another replica (${build.replicaId ?? 'none'}); start it there`);
    }
    this.builder();
    this.queue.push({ id, caller });
    this.pump();
    return (await this.store.getImageBuild(id)) ?? build;
  }

  /** Builds of the caller (personal, or a team's), newest first. */
  async list(caller: Principal, teamId: string | null, offset: number, limit: number): Promise<{ rows: ImageBuildRecord[]; total: number }> {
    if (teamId !== null && !caller.teams.has(teamId)) throw new ApiError('FORBIDDEN', `You are not a member of team ${teamId}`);
    return this.store.listImageBuilds(caller.user.id, teamId, { offset, limit });
  }

  /** The build's output so far. */
  async logs(caller: Principal, id: string): Promise<{ build: ImageBuildRecord; logs: string }> {
    const build = await this.get(caller, id);
    const logs = await readFile(join(this.dir, id, 'build.log'), 'utf8').catch(() => '');
    return { build, logs };
  }

  /** Built images of the caller (personal, or a team's), and their builds that have not finished. */
  async listImages(
    caller: Principal,
    teamId: string | null,
    page: { offset: number; limit: number; search: string | null },
  ): Promise<{ rows: ImageListRow[]; total: number }> {
    if (teamId !== null && !caller.teams.has(teamId)) throw new ApiError('FORBIDDEN', `You are not a member of team ${teamId}`);
    const artifacts = await this.store.listImageArtifacts(caller.user.id, teamId, page);
    const rows: ImageListRow[] = artifacts.rows.map((artifact) => ({ kind: 'artifact', artifact }));
    if (page.offset === 0) {
      const recent = await this.store.listImageBuilds(caller.user.id, teamId, { offset: 0, limit: 100 });
      const open: ImageBuildStatus[] = ['PENDING', 'UPLOADING', 'BUILDING'];
      for (const build of recent.rows) {
        if (!open.includes(build.status)) continue;
        if (page.search !== null && !build.imageName.includes(page.search)) continue;
        rows.push({ kind: 'build', build });
      }
    }
    return { rows, total: artifacts.total };
  }

  /** A built image of the caller (or of a team they are in) by name and tag; 404 otherwise. */
  private async ownImage(caller: Principal, name: string, tag: string, teamId: string | null): Promise<ImageArtifactRecord> {
    if (teamId !== null && !caller.teams.has(teamId)) throw new ApiError('FORBIDDEN', `You are not a member of team ${teamId}`);
    const owner = teamId === null ? caller.user.id : `team-${teamId}`;
    const artifact = await this.store.getImageArtifactByPath(`${BUILT_IMAGE_REGISTRY}/${owner}/${name}:${tag}`);
    if (!artifact || !mayUse(caller, artifact)) throw new ApiError('IMAGE_NOT_FOUND', `Image ${name}:${tag} not found`);
    return artifact;
  }

  /**
   * Prime's publish and unpublish: a PUBLIC image may be run (`docker_image`) and built on (`FROM`)
   * by every user under its full path; only its owners list, change or delete it. Making it
   * PRIVATE again refuses new uses at once; sandboxes already running keep running.
   */
  async setVisibility(caller: Principal, name: string, tag: string, visibility: ImageVisibility, teamId: string | null): Promise<ImageArtifactRecord> {
    const artifact = await this.ownImage(caller, name, tag, teamId);
    this.checkTeamChange(caller, artifact, (message) => new ApiError('FORBIDDEN', message));
    if (artifact.visibility === visibility) return artifact;
    const next = { ...artifact, visibility };
    await this.store.putImageArtifact(next);
    return next;
  }

  /** Refuses a change of a team image by a member who neither made it nor administers the team. */
  private checkTeamChange(caller: Principal, artifact: ImageArtifactRecord, refuse: (message: string) => Error): void {
    if (artifact.teamId !== null && artifact.userId !== caller.user.id && caller.teams.get(artifact.teamId) !== 'admin') {
      throw refuse('Only the image creator or a team admin can change a team image');
    }
  }

  /** Deletes a built image (the caller's, or one of a team they are in) from the store and the driver. */
  async deleteImage(caller: Principal, name: string, tag: string, teamId: string | null): Promise<void> {
    const artifact = await this.ownImage(caller, name, tag, teamId);
    const path = artifact.fullImagePath;
    if (artifact.teamId !== null && artifact.userId !== caller.user.id && caller.teams.get(artifact.teamId) !== 'admin') {
      throw new ApiError('FORBIDDEN', 'Only the image creator or a team admin can delete a team image');
    }
    await this.store.deleteImageArtifact(artifact.id);
    await this.runtime?.imageBuilder?.remove(path).catch((error: unknown) => this.log.warn({ err: error, image: path }, 'removing a built image from the driver failed'));
  }

  /**
   * Prime's `PATCH /images`: independent updates of the caller's images, each a rename (name,
   * tag), a move between the caller's personal scope and a team they are in (owner), or a
   * visibility (PRIVATE only). An item that fails (not found, not allowed, the target exists,
   * PUBLIC or platform images) fails alone with a code; `dryRun` checks without changing.
   */
  async update(caller: Principal, updates: ImageUpdateItem[], dryRun: boolean): Promise<ImageUpdateOutcome[]> {
    const outcomes: ImageUpdateOutcome[] = [];
    for (const item of updates) {
      let before: ImageCoordinates | null = null;
      try {
        const artifact = await this.updateSource(caller, item.source);
        before = coordinates(artifact);
        const set = item.set;
        if (set.owner?.type === 'platform') throw new ItemError('NOT_IMPLEMENTED', 'platform images are not supported');
        if (set.name !== undefined && !validName(set.name)) throw new ItemError('VALIDATION_FAILED', 'name must be 1-128 lower-case letters, digits and separators (. _ - /)');
        if (set.tag !== undefined && !IMAGE_TAG.test(set.tag)) throw new ItemError('VALIDATION_FAILED', 'tag must be 1-128 letters, digits, _ . - (not starting with . or -)');
        const teamId = set.owner === undefined ? artifact.teamId : set.owner.type === 'team' ? set.owner.teamId : null;
        if (teamId !== null && !caller.teams.has(teamId)) throw new ItemError('FORBIDDEN', `You are not a member of team ${teamId}`);
        this.checkTeamChange(caller, artifact, (message) => new ItemError('FORBIDDEN', message));
        const name = set.name ?? artifact.imageName;
        const tag = set.tag ?? artifact.imageTag;
        const path = `${BUILT_IMAGE_REGISTRY}/${teamId === null ? caller.user.id : `team-${teamId}`}/${name}:${tag}`;
        const moved = path !== artifact.fullImagePath;
        if (moved && (await this.store.getImageArtifactByPath(path))) throw new ItemError('CONFLICT', `An image ${name}:${tag} exists there already`);
        const visibility = set.visibility ?? artifact.visibility;
        const next: ImageArtifactRecord = { ...artifact, teamId, imageName: name, imageTag: tag, fullImagePath: path, userId: teamId === null ? caller.user.id : artifact.userId, visibility };
        if (moved && !dryRun) {
          const digest = await this.builder().rename(artifact.fullImagePath, path).catch((error: unknown) => {
            throw new ItemError('SERVICE_UNAVAILABLE', `The runtime driver could not rename the image: ${(error as Error).message}`);
          });
          await this.store.deleteImageArtifact(artifact.id);
          await this.store.putImageArtifact({ ...next, runtimeRef: digest });
        } else if (visibility !== artifact.visibility && !dryRun) {
          await this.store.putImageArtifact(next);
        }
        outcomes.push({ success: true, before, after: coordinates(next), error: null });
      } catch (error) {
        if (!(error instanceof ItemError) && !(error instanceof ApiError)) throw error;
        const code = error instanceof ItemError ? error.code : error.code;
        outcomes.push({ success: false, before, after: null, error: { code, message: error.message } });
      }
    }
    return outcomes;
  }

  /** The image a `PATCH /images` item names, if the caller may change it. */
  private async updateSource(caller: Principal, source: ImageUpdateItem['source']): Promise<ImageArtifactRecord> {
    let path: string;
    if (source.reference !== undefined) {
      if (source.owner !== undefined || source.name !== undefined || source.tag !== undefined) throw new ItemError('VALIDATION_FAILED', 'source accepts either reference or owner/name/tag, not both');
      // `name:tag` (personal), `<user id>/name:tag` or `team-<id>/name:tag`, or the full `corral.local/…` path.
      const ref = source.reference.replace(new RegExp(`^${BUILT_IMAGE_REGISTRY.replace('.', '\\.')}/`), '');
      const first = ref.includes('/') ? ref.slice(0, ref.indexOf('/')) : undefined;
      const named = first !== undefined && (first === caller.user.id || first.startsWith('team-'));
      const m = /^(.+):([^:/]+)$/.exec(named ? ref.slice(ref.indexOf('/') + 1) : ref);
      if (!m?.[1] || !m[2]) throw new ItemError('VALIDATION_FAILED', `reference ${source.reference} is not name:tag or <owner>/name:tag`);
      path = `${BUILT_IMAGE_REGISTRY}/${named ? first : caller.user.id}/${m[1]}:${m[2]}`;
    } else {
      if (source.owner === undefined || source.name === undefined || source.tag === undefined) throw new ItemError('VALIDATION_FAILED', 'source requires owner, name, and tag (or a reference)');
      if (source.owner.type === 'platform') throw new ItemError('IMAGE_NOT_FOUND', `Image ${source.name}:${source.tag} not found (Corral has no platform images)`);
      const owner = source.owner.type === 'team' ? `team-${source.owner.teamId}` : caller.user.id;
      path = `${BUILT_IMAGE_REGISTRY}/${owner}/${source.name}:${source.tag}`;
    }
    const artifact = await this.store.getImageArtifactByPath(path);
    if (!artifact || !mayUse(caller, artifact)) throw new ItemError('IMAGE_NOT_FOUND', `Image ${source.reference ?? `${source.name ?? ''}:${source.tag ?? ''}`} not found`);
    return artifact;
  }

  /**
   * Prime's `POST /images/{name}/{tag}/vm-build`. Corral's sandboxes are containers: an image is
   * ready for them as soon as it is built, and no VM image is made. Answers the image as it is
   * (404 when the caller has no such image).
   */
  async vmBuild(caller: Principal, name: string, tag: string, teamId: string | null): Promise<ImageArtifactRecord> {
    return this.ownImage(caller, name, tag, teamId);
  }

  /**
   * Refuses (404 IMAGE_NOT_FOUND) a `docker_image` in the built-image namespace that the caller
   * may not use; any other reference is the driver's to pull.
   */
  async checkUse(caller: Principal, reference: string): Promise<void> {
    const refused = this.runtime?.imageBuilder?.refusal?.(reference);
    if (refused !== undefined) throw ApiError.invalid('docker_image', refused);
    if (!isBuiltImageRef(reference)) return;
    const artifact = await this.store.getImageArtifactByPath(parseImageRef(reference).canonical);
    if (!artifact || !mayRun(caller, artifact)) throw new ApiError('IMAGE_NOT_FOUND', `Image ${reference} not found: build it first (GET /api/v1/images lists yours)`);
  }

  /** Prime's `check-docker-image`: whether the image can be pulled with the given credentials. */
  async checkDockerImage(caller: Principal, image: string, credentialsId: string | null): Promise<{ accessible: boolean; details: string }> {
    if (isBuiltImageRef(image)) {
      const artifact = await this.store.getImageArtifactByPath(parseImageRef(image).canonical);
      return artifact && mayRun(caller, artifact)
        ? { accessible: true, details: `Image ${image} was built on this server` }
        : { accessible: false, details: `Image ${image} not found` };
    }
    const refused = this.runtime?.imageBuilder?.refusal?.(image);
    if (refused !== undefined) return { accessible: false, details: refused };
    // Without a driver nothing is ever pulled, so nothing is asked of a registry either.
    if (this.runtime === null) return { accessible: false, details: 'This server has no runtime driver (CORRAL_RUNTIME=none): it pulls no images' };
    let credentials: { username: string; password: string } | undefined;
    if (credentialsId !== null) {
      const record = await this.registryCredentials.usable(caller, credentialsId);
      if (!record) throw ApiError.invalid('registry_credentials_id', `no registry credentials ${credentialsId} that you may use`);
      credentials = { username: record.username, password: record.password };
    }
    let ref;
    try {
      ref = parseImageRef(image);
    } catch (error) {
      return { accessible: false, details: `Invalid image reference: ${(error as Error).message}` };
    }
    try {
      const client = new RegistryClient(ref, credentials, { insecureRegistries: this.config.registryInsecure, timeoutMs: 15_000 });
      const { digest } = await client.resolveManifest();
      return { accessible: true, details: `Image ${ref.canonical} is accessible (${digest})` };
    } catch (error) {
      return { accessible: false, details: `Image ${ref.canonical} is not accessible: ${(error as Error).message}` };
    }
  }

  /**
   * Fails the builds whose context sits with a replica that is gone (or with this one before it
   * restarted): their queue and their buildah process went with it. Run once at startup.
   */
  async recover(liveReplicas: ReadonlySet<string>): Promise<number> {
    let failed = 0;
    for (const build of await this.store.listImageBuildsByStatus(['PENDING', 'UPLOADING', 'BUILDING'])) {
      if (build.replicaId === null || (build.replicaId !== this.config.replicaId && liveReplicas.has(build.replicaId))) continue;
      const done = await this.store.updateImageBuild(
        build.id,
        { status: 'FAILED', completedAt: nowIso(), errorMessage: `The build was interrupted: the server that held it (${build.replicaId}) stopped; start a new build` },
        [build.status],
      );
      if (done) failed += 1;
    }
    return failed;
  }

  /** Stops taking queued builds and waits up to 10 s for the running ones to record how they ended. */
  async close(): Promise<void> {
    this.closed = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.active]), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
    clearTimeout(timer);
  }

  private pump(): void {
    while (!this.closed && this.running < this.config.imageBuildConcurrency && this.queue.length > 0) {
      const next = this.queue.shift();
      if (!next) break;
      this.running += 1;
      const job = this.run(next)
        .catch((error: unknown) => this.log.error({ err: error, buildId: next.id }, 'image build failed unexpectedly'))
        .finally(() => {
          this.running -= 1;
          this.active.delete(job);
          this.pump();
        });
      this.active.add(job);
    }
  }

  private async run({ id, caller, transfer }: QueuedBuild): Promise<void> {
    const build = await this.store.updateImageBuild(id, { status: 'BUILDING', startedAt: nowIso() }, ['PENDING']);
    if (!build) return;
    const dir = join(this.dir, id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const logFile = join(dir, 'build.log');
    const started = performance.now();
    const kind = transfer ? 'transfer' : 'build';
    const ended = (result: 'completed' | 'failed'): void => {
      this.metrics?.imageBuilds.inc({ kind, result });
      this.metrics?.imageBuildSeconds.observe({ kind, result }, (performance.now() - started) / 1000);
    };
    let logged = 0;
    let writes = Promise.resolve();
    const onOutput = (text: string): void => {
      if (logged >= MAX_LOG_BYTES) return;
      const chunk = text.slice(0, MAX_LOG_BYTES - logged);
      logged += Buffer.byteLength(chunk);
      writes = writes.then(() => appendFile(logFile, chunk)).catch(() => undefined);
    };
    try {
      const result = transfer
        ? await this.builder().transfer({ source: transfer.source, ...(transfer.credentials ? { credentials: transfer.credentials } : {}), reference: build.fullImagePath, onOutput })
        : await this.builder().build({
            contextTar: join(dir, 'context.tar'),
            dockerfilePath: build.dockerfilePath,
            reference: build.fullImagePath,
            cacheKey: build.teamId === null ? `user-${build.userId}` : `team-${build.teamId}`,
            baseCredentials: async (reference) => {
              const ref = parseImageRef(reference);
              if (ref.registry === BUILT_IMAGE_REGISTRY) return undefined;
              const found = pickCredentials(await this.store.listRegistryCredentials(caller.user.id, [...caller.teams.keys()]), build.teamId, ref.registry);
              return found ? { username: found.username, password: found.password } : undefined;
            },
            mayUseBase: async (reference) => {
              if (this.runtime?.imageBuilder?.refusal?.(reference) !== undefined) return false;
              if (!isBuiltImageRef(reference)) return true;
              const artifact = await this.store.getImageArtifactByPath(reference);
              return artifact !== undefined && mayRun(caller, artifact);
            },
            onOutput,
          });
      const now = nowIso();
      await this.store.putImageArtifact({
        id: newId(),
        userId: build.userId,
        teamId: build.teamId,
        imageName: build.imageName,
        imageTag: build.imageTag,
        fullImagePath: result.reference,
        runtimeRef: result.digest,
        visibility: build.visibility,
        sizeBytes: result.sizeBytes,
        buildId: build.id,
        createdAt: now,
        pushedAt: now,
      });
      await this.store.updateImageBuild(id, { status: 'COMPLETED', completedAt: nowIso() });
      ended('completed');
    } catch (error) {
      ended('failed');
      const failure = error instanceof ImageBuildError ? error : new ImageBuildError((error as Error).message, null, '');
      const tail = failure.outputTail.trim();
      await this.store.updateImageBuild(id, {
        status: 'FAILED',
        completedAt: nowIso(),
        failedStep: failure.failedStep,
        errorMessage: tail === '' ? failure.message : `${failure.message}\n--- last output ---\n${tail}`,
      });
    } finally {
      await writes;
      await rm(join(dir, 'context.tar'), { force: true });
    }
  }
}

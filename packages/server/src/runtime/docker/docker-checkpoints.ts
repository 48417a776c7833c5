import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type Docker from 'dockerode';
import type { ImageRef } from '../registry/image-ref.js';
import { RuntimeError } from '../runtime.js';
import { isConflict, isNotFound } from './docker-exec.js';
import { WorkspaceArchives } from './workspace-archive.js';

/** Repository of checkpoint images in the engine; each checkpoint is one tag of it. */
export const CHECKPOINT_REPOSITORY = 'corral-checkpoint';
/** Label holding the Corral checkpoint id on a checkpoint image (and so on containers restored from it). */
export const LABEL_CHECKPOINT_ID = 'corral.checkpoint.id';
/** Label holding the driver instance that made a checkpoint image. */
export const LABEL_CHECKPOINT_INSTANCE = 'corral.checkpoint.instance';
/** Label holding the digest of a checkpoint's workspace archive (loop disk mode), absent without one. */
const LABEL_CHECKPOINT_WORKSPACE = 'corral.checkpoint.workspace';
/** Label holding the size in bytes of the user's image under the checkpoint's layers. */
const LABEL_CHECKPOINT_BASE_BYTES = 'corral.checkpoint.base-bytes';

/** Tags that hold a checkpoint image for a restore in progress: `hold.<ms since epoch>.<random>`. */
const HOLD_PREFIX = 'hold.';
/** A hold's name, with its time. */
const HOLD_TAG = /^corral-checkpoint:hold\.(\d+)\./;
/** A hold older than this is a left-over of a crashed restore. */
const STALE_HOLD_MS = 10 * 60_000;

/** What a restore reads from a checkpoint. */
export interface CheckpointSource {
  /** The checkpoint image's id: the container is created from it. */
  imageId: string;
  /** The tag holding the image until `release`. */
  hold: string;
  /** The workspace archive to extract into the fresh disk (loop disk mode), if the checkpoint has one. */
  workspaceDigest: string | undefined;
  /** Bytes of the user's image the checkpoint was made on (what the first sandbox's disk limit was added to). */
  baseImageBytes: number;
}

/** What `capture` needs from the driver. */
export interface CaptureRequest {
  /** The container's full id. */
  containerId: string;
  checkpointId: string;
  /** Host directory of the sandbox's loop disk, to archive with the container's layer; null outside loop mode. */
  workspaceDir: string | null;
  /**
   * Freezes the container for the copies and returns the thaw (a no-op when it was paused already
   * or is not running). Only with a workspace: otherwise the engine's commit freezes it itself.
   */
  freeze: () => Promise<() => Promise<void>>;
  /** Called once the copies are taken and the container runs again. */
  onFrozen?: () => void;
}

/**
 * Filesystem checkpoints of docker sandboxes: the container's writable layer committed into a
 * checkpoint image (tag `corral-checkpoint:<tag>`, labelled with the checkpoint id and the driver
 * instance), plus, in loop disk mode, the workspace disk as a content-addressed tarball
 * ({@link WorkspaceArchives}). A checkpoint's ref is its image's tagged name.
 *
 * A sandbox restored from a checkpoint runs on the checkpoint's image, so a checkpoint of it commits
 * one more layer on top: layers are shared by every image and container made from them.
 *
 * Deleting a checkpoint removes its tag and then its image, unless containers or later checkpoints
 * still use it: the engine then keeps it, untagged, and {@link collect} removes it once the last of
 * them is gone (the driver calls it when it removes a sandbox restored from a checkpoint, and
 * `sweep` at startup for every untagged checkpoint image of the instance). A tagged checkpoint image
 * is never removed but by `delete`.
 */
export class DockerCheckpoints {
  readonly archives: WorkspaceArchives;
  constructor(
    private readonly docker: Docker,
    private readonly instance: string,
    archiveDir: string,
  ) {
    this.archives = new WorkspaceArchives(archiveDir);
  }

  /** The checkpoint image's name for a checkpoint id (a valid Docker tag, unique per instance). */
  refFor(checkpointId: string): string {
    const plain = `${this.instance}.${checkpointId}`;
    const tag = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(plain) ? plain : createHash('sha256').update(plain).digest('hex');
    return `${CHECKPOINT_REPOSITORY}:${tag}`;
  }

  /**
   * Commits the container into a checkpoint image, with its workspace archive in loop mode (both
   * copies inside one freeze). Returns the ref and the bytes this checkpoint adds over the image it
   * was made on (its new layer, plus its workspace archive unless that is its parent's).
   */
  async capture(request: CaptureRequest): Promise<{ ref: string; sizeBytes: number }> {
    const ref = this.refFor(request.checkpointId);
    const container = this.docker.getContainer(request.containerId);
    const info = await container.inspect();
    const base = await this.docker
      .getImage(info.Image)
      .inspect()
      .catch((error: unknown) => {
        throw isNotFound(error) ? new RuntimeError('CHECKPOINT_FAILED', `the image the sandbox runs on (${info.Image}) is gone from the engine`, { cause: error }) : error;
      });
    const baseLabels = base.Config?.Labels ?? {};
    const parentDigest = baseLabels[LABEL_CHECKPOINT_INSTANCE] === this.instance ? baseLabels[LABEL_CHECKPOINT_WORKSPACE] : undefined;
    const baseImageBytes = Number(baseLabels[LABEL_CHECKPOINT_BASE_BYTES] ?? base.Size ?? 0) || 0;
    let archive: { temp: string; digest: string; sizeBytes: number } | undefined;
    let imageId: string;
    const thaw = request.workspaceDir !== null ? await request.freeze() : async () => undefined;
    try {
      if (request.workspaceDir !== null) archive = await this.archives.capture(request.workspaceDir);
      const labels: Record<string, string> = {
        ...withoutCheckpointLabels(baseLabels),
        [LABEL_CHECKPOINT_ID]: request.checkpointId,
        [LABEL_CHECKPOINT_INSTANCE]: this.instance,
        [LABEL_CHECKPOINT_BASE_BYTES]: String(baseImageBytes),
        ...(archive ? { [LABEL_CHECKPOINT_WORKSPACE]: archive.digest } : {}),
      };
      const [repo, tag] = splitRef(ref);
      const committed = (await container.commit({
        _query: {
          container: request.containerId,
          repo,
          tag,
          comment: `corral checkpoint ${request.checkpointId}`,
          // With a workspace the driver froze the container itself; a paused one stays paused either way.
          pause: request.workspaceDir === null,
        },
        _body: { ...(base.Config ?? {}), Env: imageEnv(base.Config?.Env ?? [], info.Config.Env ?? []), Labels: labels },
      })) as { Id?: string };
      imageId = committed.Id ?? '';
    } catch (error) {
      if (archive) await rm(archive.temp, { force: true });
      await thaw().catch(() => undefined);
      throw error;
    }
    try {
      await thaw();
      request.onFrozen?.();
      if (archive) await this.archives.store(archive.temp, archive.digest);
      const image = await this.docker.getImage(imageId || ref).inspect();
      const layerBytes = Math.max(0, (image.Size ?? 0) - (base.Size ?? 0));
      const archiveBytes = archive && archive.digest !== parentDigest ? archive.sizeBytes : 0;
      return { ref, sizeBytes: layerBytes + archiveBytes };
    } catch (error) {
      // A checkpoint that failed leaves nothing: its image and any archive only it names go.
      if (archive) await rm(archive.temp, { force: true });
      await this.untag(ref).catch(() => undefined);
      if (archive) await this.collectArchive(archive.digest).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Reads a checkpoint for a restore and holds its image (and so its archive) until `release`, by
   * a second tag of the image (`corral-checkpoint:hold.<ms>.<random>`): a `delete` meanwhile, from
   * this process or another replica, removes the checkpoint's own tag but neither. Throws
   * `CHECKPOINT_FAILED` when there is no such checkpoint (deleted, or never made by this instance).
   */
  async acquire(ref: string): Promise<CheckpointSource> {
    if (!ref.startsWith(`${CHECKPOINT_REPOSITORY}:`)) throw new RuntimeError('CHECKPOINT_FAILED', `${ref} is not a docker checkpoint`);
    const gone = (cause?: unknown): RuntimeError => new RuntimeError('CHECKPOINT_FAILED', `checkpoint ${ref} does not exist (deleted?)`, cause === undefined ? undefined : { cause });
    let info: Docker.ImageInspectInfo;
    try {
      info = await this.docker.getImage(ref).inspect();
    } catch (error) {
      if (isNotFound(error)) throw gone(error);
      throw error;
    }
    const labels = info.Config?.Labels ?? {};
    if (labels[LABEL_CHECKPOINT_INSTANCE] !== this.instance || labels[LABEL_CHECKPOINT_ID] === undefined) {
      throw new RuntimeError('CHECKPOINT_FAILED', `checkpoint ${ref} was not made by this deployment`);
    }
    const holdTag = `${HOLD_PREFIX}${Date.now()}.${randomBytes(6).toString('hex')}`;
    try {
      await this.docker.getImage(info.Id).tag({ repo: CHECKPOINT_REPOSITORY, tag: holdTag });
    } catch (error) {
      if (isNotFound(error)) throw gone(error);
      throw error;
    }
    const source: CheckpointSource = {
      imageId: info.Id,
      hold: `${CHECKPOINT_REPOSITORY}:${holdTag}`,
      workspaceDigest: labels[LABEL_CHECKPOINT_WORKSPACE],
      baseImageBytes: Number(labels[LABEL_CHECKPOINT_BASE_BYTES] ?? 0) || 0,
    };
    // Deleted between the inspect and the hold: the hold must not revive it.
    const still = await this.docker.getImage(ref).inspect().catch(() => undefined);
    if (still?.Id !== info.Id) {
      await this.release(source);
      throw gone();
    }
    return source;
  }

  /** Ends a hold of `acquire`; the checkpoint's image and archive go if it was deleted meanwhile and nothing else uses them. */
  async release(source: CheckpointSource): Promise<void> {
    await this.untag(source.hold).catch(() => undefined);
    await this.collect(source.imageId).catch(() => undefined);
    // The untag may have removed the image itself (deleted meanwhile, unused): its archive then goes too.
    if (source.workspaceDigest !== undefined) await this.collectArchive(source.workspaceDigest).catch(() => undefined);
  }

  /** Removes one name of a checkpoint image (the image too when nothing else names or uses it). */
  private async untag(name: string): Promise<void> {
    try {
      await this.docker.getImage(name).remove({ noprune: false });
    } catch (error) {
      if (isNotFound(error)) return;
      if (!isConflict(error)) throw error;
      // Its last name, and a container still uses it: forced, the engine removes the name and keeps the image while it is in use.
      await this.docker
        .getImage(name)
        .remove({ force: true, noprune: false })
        .catch((e: unknown) => {
          if (!isNotFound(e) && !isConflict(e)) throw e;
        });
    }
  }

  /**
   * Deletes a checkpoint: its tag, then its image and workspace archive unless something still
   * uses them (see the class). Idempotent.
   */
  async delete(ref: string): Promise<void> {
    if (!ref.startsWith(`${CHECKPOINT_REPOSITORY}:`)) return;
    let info: Docker.ImageInspectInfo;
    try {
      info = await this.docker.getImage(ref).inspect();
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    if (info.Config?.Labels?.[LABEL_CHECKPOINT_INSTANCE] !== this.instance) return;
    // Removes the image too when this was its only name and no container or child image uses it.
    await this.untag(ref);
    await this.collect(info.Id);
    const digest = info.Config?.Labels?.[LABEL_CHECKPOINT_WORKSPACE];
    if (digest !== undefined) await this.collectArchive(digest);
  }

  /**
   * Removes an untagged (deleted) checkpoint image of this instance when no container or child
   * image uses it (a restore in progress holds it by a tag); its parents go with it when they are deleted checkpoints too
   * (the engine prunes them). Does nothing for any other image.
   */
  async collect(imageId: string): Promise<void> {
    let info: Docker.ImageInspectInfo;
    try {
      info = await this.docker.getImage(imageId).inspect();
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    const labels = info.Config?.Labels ?? {};
    if (labels[LABEL_CHECKPOINT_INSTANCE] !== this.instance || tags(info).length > 0) return;
    try {
      await this.docker.getImage(info.Id).remove({ noprune: false });
    } catch (error) {
      // 409: a container or a child image still uses it.
      if (!isNotFound(error) && !isConflict(error)) throw error;
    }
    const digest = labels[LABEL_CHECKPOINT_WORKSPACE];
    if (digest !== undefined) await this.collectArchive(digest);
  }

  /** Deletes a workspace archive no tagged checkpoint image of this instance (checkpoints, and images held by restores) names. */
  private async collectArchive(digest: string): Promise<void> {
    const users = await this.docker.listImages({ filters: { label: [`${LABEL_CHECKPOINT_WORKSPACE}=${digest}`] } });
    if (users.some((image) => (image.RepoTags ?? []).some((t) => t !== '<none>:<none>'))) return;
    await this.archives.remove(digest);
  }

  /**
   * At startup: removes this instance's deleted checkpoint images nothing uses any more, and
   * workspace archives no checkpoint names (older than an hour, so never one a capture is writing).
   * Tagged checkpoint images are kept: they are the checkpoints.
   */
  async sweep(): Promise<void> {
    const images = await this.docker.listImages({ filters: { label: [`${LABEL_CHECKPOINT_INSTANCE}=${this.instance}`] } });
    // Holds of restores that crashed (a restore holds its checkpoint for seconds).
    for (const image of images) {
      for (const name of image.RepoTags ?? []) {
        const at = Number(HOLD_TAG.exec(name)?.[1] ?? NaN);
        if (Date.now() - at > STALE_HOLD_MS) {
          await this.untag(name).catch(() => undefined);
          image.RepoTags = (image.RepoTags ?? []).filter((t) => t !== name);
        }
      }
    }
    for (const image of images) {
      if ((image.RepoTags ?? []).some((t) => t !== '<none>:<none>')) continue;
      await this.collect(image.Id).catch(() => undefined);
    }
    const live = new Set<string>();
    for (const image of await this.docker.listImages({ filters: { label: [`${LABEL_CHECKPOINT_INSTANCE}=${this.instance}`] } })) {
      const digest = image.Labels?.[LABEL_CHECKPOINT_WORKSPACE];
      if (digest !== undefined && (image.RepoTags ?? []).some((t) => t !== '<none>:<none>')) live.add(digest);
    }
    for (const { digest, mtimeMs } of await this.archives.list()) {
      if (!live.has(digest) && WorkspaceArchives.settled(mtimeMs)) await this.archives.remove(digest);
    }
  }
}

/** Whether an image (by its inspect) is a checkpoint image, which users never name as an image. */
export function isCheckpointImage(info: Docker.ImageInspectInfo): boolean {
  return info.Config?.Labels?.[LABEL_CHECKPOINT_ID] !== undefined;
}

/** Whether a reference names the checkpoint images' repository (`corral-checkpoint:…` on Docker Hub's default namespace). */
export function namesCheckpointRepository(ref: ImageRef): boolean {
  return ref.registry === 'docker.io' && ref.repository === `library/${CHECKPOINT_REPOSITORY}`;
}

function withoutCheckpointLabels(labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).filter(([key]) => !key.startsWith('corral.checkpoint.')));
}

/**
 * The Env of a checkpoint image: the engine's commit always adds the container's variables to the
 * image's, so every variable the container has beyond its image's is stored with an empty value
 * (names only: secrets never land in an image), and the image's own keep their values.
 */
function imageEnv(baseEnv: string[], containerEnv: string[]): string[] {
  const key = (entry: string): string => entry.split('=', 1)[0] ?? entry;
  const baseKeys = new Set(baseEnv.map(key));
  const extra = [...new Set(containerEnv.map(key))].filter((k) => !baseKeys.has(k));
  return [...baseEnv, ...extra.map((k) => `${k}=`)];
}

function splitRef(ref: string): [string, string] {
  const at = ref.lastIndexOf(':');
  return [ref.slice(0, at), ref.slice(at + 1)];
}

function tags(info: Docker.ImageInspectInfo): string[] {
  return (info.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
}

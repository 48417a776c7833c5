import { lstat, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { RuntimeError } from '../runtime.js';
import type { CheckpointRequest, RuntimeCheckpoint } from '../runtime.js';
import { directorySize } from '../../util/directory-size.js';
import { pathExists } from '../../util/path-exists.js';
import { precopyUpper, syncFrozen, writeLayerTar } from './checkpoint-capture.js';
import type { TreeIndex } from './checkpoint-capture.js';
import { isCheckpointRef } from './checkpoint-store.js';
import type { CheckpointManifest, CheckpointStore, MemoryImage } from './checkpoint-store.js';
import type { AgentDescriptors } from './criu-checkpoint.js';
import type { ImageConfig, ImageRecord, ImageStore } from '../oci-images/image-store.js';
import type { UsernsMapping } from './userns.js';

/** The sandbox's files the driver writes per sandbox: never part of a checkpoint. */
export const PER_SANDBOX_FILES = ['etc/hosts', 'etc/resolv.conf', 'etc/hostname'] as const;

/** A running sandbox as a capture needs it. */
export interface CheckpointSubject {
  runtimeId: string;
  /** The overlay's upper directory on the sandbox's disk. */
  upper: string;
  cgroupsPath: string;
  /** The sandbox's lower stack (layer digests, bottom first). */
  layers: string[];
  image: string;
  imageDigest: string;
  imageConfig: ImageConfig;
  /** True while the sandbox is paused by the caller: the capture then leaves it frozen. */
  paused(): boolean;
  /** True once its removal began: a capture that has not frozen it yet gives up. */
  removing(): boolean;
  /** For memory checkpoints: how the driver dumps the sandbox's processes. */
  memory?: MemoryDumper;
}

/** How the driver dumps a sandbox's processes (CRIU) within a capture's freeze. */
export interface MemoryDumper {
  /**
   * Called before the freeze: holds new exec sessions back and waits until none is open (CRIU
   * cannot dump them). Returns the function that lets them through again (after the thaw).
   */
  quiesce(): Promise<() => void>;
  /** Dumps the frozen processes into `imageDir` (an empty directory); returns what a restore replaces. */
  dump(imageDir: string): Promise<AgentDescriptors>;
}

/** What a restore starts from: the lower stack and, for a memory restore, the CRIU image. */
export interface RestoreSource {
  image: ImageRecord;
  memory?: { dir: string; agent: AgentDescriptors };
}

/** How long the phases of the last capture took (ms). */
export interface CaptureTimings {
  /** Processes frozen: from the freeze until the thaw completed, copying only what changed during the first copy (a paused sandbox stays frozen). */
  frozenMs: number;
  /** Copying the upper directory while the sandbox ran (before the frozen window). */
  copyMs: number;
  /** Building the layer tarball from the copy. */
  tarMs: number;
  /** Storing (checking and unpacking) the layer and writing the manifest. */
  storeMs: number;
}

/** Freezes and thaws a sandbox's cgroup (the cgroup layout's freezer). */
export interface Freezer {
  setFrozen(cgroupsPath: string, frozen: boolean): Promise<void>;
}

/**
 * Filesystem checkpoints of oci sandboxes: a capture copies the sandbox's upper directory while it
 * runs, freezes its processes only to copy again what changed meanwhile (found by inode change
 * times), then (running again) makes it one OCI layer stored content-addressed
 * in the image store, recorded with the sandbox's lower stack as a {@link CheckpointManifest}. A
 * restore mounts the manifest's layers as a new sandbox's lower stack: nothing is copied.
 */
export class OciCheckpoints {
  /** Phase times of the most recent capture (for benchmarks). */
  lastTimings: CaptureTimings | undefined;
  private readonly running = new Map<string, Promise<unknown>>();
  /** Per sandbox, the last freezer operation queued through {@link exclusive}. */
  private readonly freezerLocks = new Map<string, Promise<unknown>>();
  /** Layers this process's captures stored (candidates for {@link pruneLayers}). */
  private readonly stored = new Set<string>();
  /** Per sandbox, its last capture: a capture with it as `parentRef` stores only what changed since (in memory: after a restart a capture stores the whole upper). */
  private readonly lastCapture = new Map<string, { ref: string; index: TreeIndex; frozenAtMs: number }>();

  constructor(
    readonly store: CheckpointStore,
    private readonly images: ImageStore,
    private readonly freezer: Freezer,
  ) {}

  /**
   * Captures `subject`'s filesystem as checkpoint `request.checkpointId`. Captures of one sandbox
   * run one after another (a second would thaw the first's freeze).
   */
  capture(subject: CheckpointSubject, request: CheckpointRequest, userns: UsernsMapping | null): Promise<RuntimeCheckpoint> {
    if (request.memory && !subject.memory) {
      return Promise.reject(new RuntimeError('CHECKPOINT_FAILED', 'memory checkpoints are not available for this sandbox (filesystem checkpoints are)'));
    }
    if (!isCheckpointRef(request.checkpointId)) {
      return Promise.reject(new RuntimeError('CHECKPOINT_FAILED', `invalid checkpoint id ${JSON.stringify(request.checkpointId)}`));
    }
    const previous = this.running.get(subject.runtimeId) ?? Promise.resolve();
    const job = previous.catch(() => undefined).then(() => this.doCapture(subject, request, userns));
    this.running.set(subject.runtimeId, job);
    void job.catch(() => undefined).finally(() => {
      if (this.running.get(subject.runtimeId) === job) this.running.delete(subject.runtimeId);
    });
    return job;
  }

  private async doCapture(subject: CheckpointSubject, request: CheckpointRequest, userns: UsernsMapping | null): Promise<RuntimeCheckpoint> {
    const ref = request.checkpointId;
    if (await this.store.get(ref)) throw new RuntimeError('CHECKPOINT_FAILED', `checkpoint ${ref} already exists`);
    const tmp = await this.store.tmpDir();
    try {
      const staging = join(tmp, 'upper');
      // Written through the user namespace when the upper's root belongs to the sandbox's mapped root.
      const mapped = userns !== null && (await lstat(subject.upper)).uid === userns.hostUid ? userns : null;
      // Copied while the sandbox runs; the frozen window only copies what changed meanwhile.
      const precopyStart = performance.now();
      const pre = await precopyUpper(subject.upper, staging);
      const copyMs = performance.now() - precopyStart;
      let frozenMs = 0;
      let frozenAtMs = Date.now();
      let memory: MemoryImage | undefined;
      const memoryDir = join(tmp, 'memory');
      // The frozen pass follows paths in the upper: no sandbox process may run until it ends.
      // resume() and remove() queue behind it (exclusive()); a removal that began first wins.
      const index = await this.exclusive(subject.runtimeId, async (): Promise<TreeIndex> => {
        if (subject.removing()) throw new RuntimeError('CHECKPOINT_FAILED', 'the sandbox is being removed');
        const dumper = request.memory ? subject.memory : undefined;
        const release = dumper ? await dumper.quiesce() : undefined;
        const frozenAt = performance.now();
        frozenAtMs = Date.now();
        try {
          await this.freezer.setFrozen(subject.cgroupsPath, true);
          const synced = (await syncFrozen(subject.upper, staging, pre)).index;
          // The processes are dumped in the same freeze as their files: a restore finds every file as they left it.
          if (dumper) {
            await mkdir(memoryDir);
            const agent = await dumper.dump(memoryDir);
            memory = { agent, sizeBytes: await directorySize(memoryDir) };
          }
          return synced;
        } finally {
          // The freezer ends as the driver's paused flag says: a pause() that came meanwhile keeps it frozen.
          if (!subject.paused()) await this.freezer.setFrozen(subject.cgroupsPath, false);
          frozenMs = performance.now() - frozenAt;
          release?.();
        }
      });
      try {
        request.onFrozen?.();
      } catch {
        // The caller's notification must not fail the capture.
      }
      const tarStart = performance.now();
      const tar = join(tmp, 'layer.tar');
      // On top of the sandbox's own previous checkpoint: only what changed since, over that checkpoint's layers.
      const last = this.lastCapture.get(subject.runtimeId);
      const base = last !== undefined && request.parentRef === last.ref ? await this.store.get(last.ref) : undefined;
      const since = base && last ? { before: last.index, now: index, changedSinceMs: last.frozenAtMs } : undefined;
      await writeLayerTar(staging, tar, { exclude: PER_SANDBOX_FILES, userns: mapped, ...(since ? { since } : {}) });
      await rm(staging, { recursive: true, force: true });
      const storeStart = performance.now();
      const { hex, tarBytes } = await this.images.importLayer(tar);
      this.stored.add(hex);
      const manifest: CheckpointManifest = {
        ref,
        image: subject.image,
        imageDigest: subject.imageDigest,
        layers: [...(base ? base.layers : subject.layers), hex],
        layer: hex,
        sizeBytes: tarBytes,
        config: subject.imageConfig,
        ...(request.parentRef !== undefined ? { parentRef: request.parentRef } : {}),
        ...(memory ? { memory } : {}),
        createdAt: new Date().toISOString(),
      };
      if (memory) await this.store.keepMemory(ref, memoryDir);
      await this.store.save(manifest);
      this.lastCapture.set(subject.runtimeId, { ref, index, frozenAtMs });
      this.lastTimings = { frozenMs, copyMs, tarMs: storeStart - tarStart, storeMs: performance.now() - storeStart };
      return { ref, sizeBytes: tarBytes + (memory?.sizeBytes ?? 0), memory: memory !== undefined };
    } catch (error) {
      if (error instanceof RuntimeError) throw error;
      throw new RuntimeError('CHECKPOINT_FAILED', `capturing the sandbox's filesystem failed: ${(error as Error).message}`, { cause: error });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * The image-like record a restore of `ref` starts from: the checkpoint's layers as the lower
   * stack, the image's config. `CHECKPOINT_FAILED` when the checkpoint or one of its layers is
   * gone, or memory is asked for.
   */
  async restoreSource(ref: string, memory: boolean): Promise<RestoreSource> {
    if (!isCheckpointRef(ref)) throw new RuntimeError('CHECKPOINT_FAILED', `invalid checkpoint ref ${JSON.stringify(ref)}`);
    const manifest = await this.store.get(ref);
    if (!manifest) throw new RuntimeError('CHECKPOINT_FAILED', `no checkpoint ${ref}`);
    if (memory && !manifest.memory) throw new RuntimeError('CHECKPOINT_FAILED', `checkpoint ${ref} holds no processes (it is a filesystem checkpoint)`);
    const memoryDir = this.store.memoryDir(ref);
    if (memory && !(await pathExists(memoryDir))) throw new RuntimeError('CHECKPOINT_FAILED', `checkpoint ${ref} lost its CRIU image`);
    for (const layer of manifest.layers) {
      if (!(await pathExists(this.images.layerDir(layer)))) throw new RuntimeError('CHECKPOINT_FAILED', `checkpoint ${ref} lost its layer ${layer}`);
    }
    const image: ImageRecord = {
      ref: manifest.image,
      digest: manifest.imageDigest,
      layers: manifest.layers,
      config: manifest.config,
      source: 'checkpoint',
      createdAt: manifest.createdAt,
    };
    return memory && manifest.memory ? { image, memory: { dir: memoryDir, agent: manifest.memory.agent } } : { image };
  }

  /**
   * Deletes the layers this process's captures stored that no image record, no checkpoint
   * manifest and nothing in `inUse` (the layers of sandboxes) references. Returns them.
   */
  async pruneLayers(inUse: ReadonlySet<string>): Promise<string[]> {
    const keep = new Set([...inUse, ...(await this.store.layersInUse())]);
    for (const image of await this.images.list()) for (const layer of image.layers) keep.add(layer);
    const removed: string[] = [];
    for (const layer of this.stored) {
      if (keep.has(layer)) continue;
      await rm(this.images.layerDir(layer), { recursive: true, force: true });
      this.stored.delete(layer);
      removed.push(layer);
    }
    return removed;
  }

  /**
   * Runs `work` (a freezer change of the sandbox) after every one queued before it for the same
   * sandbox: a resume or removal never thaws a sandbox during a capture's frozen pass.
   */
  exclusive<T>(runtimeId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.freezerLocks.get(runtimeId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.freezerLocks.set(runtimeId, next);
    void next.catch(() => undefined).finally(() => {
      if (this.freezerLocks.get(runtimeId) === next) this.freezerLocks.delete(runtimeId);
    });
    return next;
  }

  /** Forgets what the driver keeps in memory about a sandbox (its last capture); called when it is removed. */
  forget(runtimeId: string): void {
    this.lastCapture.delete(runtimeId);
  }

  /** Deletes the manifest of `ref`; its layers stay while a sandbox or another checkpoint uses them. Idempotent. */
  async delete(ref: string): Promise<void> {
    if (!isCheckpointRef(ref)) return;
    await this.store.delete(ref);
  }
}

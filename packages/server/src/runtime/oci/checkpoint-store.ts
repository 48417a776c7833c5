import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RuntimeError } from '../runtime.js';
import type { ImageConfig } from '../oci-images/image-store.js';
import type { AgentDescriptors } from './criu-checkpoint.js';

/**
 * A filesystem checkpoint as the oci driver records it: an image-like manifest whose layers (in
 * the {@link ImageStore}, bottom first) are the image's, then one layer per checkpoint in its
 * ancestry, the last one this checkpoint's own.
 */
export interface CheckpointManifest {
  /** The driver's handle (`RuntimeCheckpoint.ref`). */
  ref: string;
  /** Canonical reference of the image the chain started from. */
  image: string;
  /** Digest of that image's manifest. */
  imageDigest: string;
  /** Layer digests (hex), bottom first: the lower stack a restore mounts. */
  layers: string[];
  /** The layer this checkpoint added (the last of `layers`). */
  layer: string;
  /** Bytes of the layer's tarball: what this checkpoint stores beyond its parent. */
  sizeBytes: number;
  /** The image's config (env, working directory, …), used by restores. */
  config: ImageConfig;
  /** The checkpoint whose layers this one extends (the sandbox's restore source), when any. */
  parentRef?: string;
  /** A memory checkpoint's CRIU image (in {@link CheckpointStore.memoryDir}) and what a restore needs to know of it. */
  memory?: MemoryImage;
  createdAt: string;
}

/** The processes of a memory checkpoint, as CRIU dumped them. */
export interface MemoryImage {
  /** Bytes of the CRIU image. */
  sizeBytes: number;
  /** The dumped agent's descriptors a restore replaces (criu-checkpoint.ts). */
  agent: AgentDescriptors;
}

/** How old a CRIU image without a manifest must be before {@link CheckpointStore.removeStaleCaptures} deletes it. */
const STALE_MEMORY_MS = 3_600_000;

/** Refs are the API's checkpoint ids: one path component, no dots first. */
const REF_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Whether `ref` can name a checkpoint manifest. */
export function isCheckpointRef(ref: string): boolean {
  return REF_PATTERN.test(ref);
}

/**
 * Checkpoint manifests under `<root>` (conventionally `<stateDir>/checkpoints`, shared by every
 * instance on the state directory): `<ref>.json` (written by rename, so a manifest is whole or
 * absent), `memory/<ref>/` for a memory checkpoint's CRIU image (moved into place before the
 * manifest is written) and `tmp/` for captures in progress. The layers themselves live in the
 * image store.
 */
export class CheckpointStore {
  constructor(readonly root: string) {}

  private path(ref: string): string {
    if (!isCheckpointRef(ref)) throw new RuntimeError('CHECKPOINT_FAILED', `invalid checkpoint ref ${JSON.stringify(ref)}`);
    return join(this.root, `${ref}.json`);
  }

  /** The manifest of `ref`, or undefined when there is none. */
  async get(ref: string): Promise<CheckpointManifest | undefined> {
    try {
      return JSON.parse(await readFile(this.path(ref), 'utf8')) as CheckpointManifest;
    } catch (error) {
      if (error instanceof RuntimeError) throw error;
      return undefined;
    }
  }

  /** Stores `manifest` durably under its ref (replacing none: refs are unique checkpoint ids). */
  async save(manifest: CheckpointManifest): Promise<void> {
    const path = this.path(manifest.ref);
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(manifest, null, 2), { mode: 0o600 });
    await rename(tmp, path);
  }

  /** Where the CRIU image of memory checkpoint `ref` is kept. */
  memoryDir(ref: string): string {
    this.path(ref); // validates the ref
    return join(this.root, 'memory', ref);
  }

  /** Moves a finished CRIU image into place for `ref` (before its manifest is saved). */
  async keepMemory(ref: string, imageDir: string): Promise<void> {
    await mkdir(join(this.root, 'memory'), { recursive: true, mode: 0o700 });
    await rename(imageDir, this.memoryDir(ref));
  }

  /**
   * Forgets `ref` and deletes its CRIU image (sandboxes restored from it no longer need it; its
   * layers stay until the image store's GC finds nothing using them). Idempotent.
   */
  async delete(ref: string): Promise<void> {
    await rm(this.path(ref), { force: true });
    await rm(this.memoryDir(ref), { recursive: true, force: true });
  }

  /** Every manifest stored. */
  async list(): Promise<CheckpointManifest[]> {
    const out: CheckpointManifest[] = [];
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue;
      const manifest = await this.get(name.slice(0, -'.json'.length)).catch(() => undefined);
      if (manifest) out.push(manifest);
    }
    return out;
  }

  /** Every layer some stored checkpoint uses (for the image store's GC). */
  async layersInUse(): Promise<Set<string>> {
    const layers = new Set<string>();
    for (const manifest of await this.list()) for (const layer of manifest.layers) layers.add(layer);
    return layers;
  }

  /** A fresh private directory for one capture (under `tmp/`, on the state directory's filesystem). */
  async tmpDir(): Promise<string> {
    await mkdir(join(this.root, 'tmp'), { recursive: true, mode: 0o700 });
    return mkdtemp(join(this.root, 'tmp', `capture-${process.pid}-`));
  }

  /**
   * Removes captures left unfinished by processes that no longer run (other servers may share the
   * directory), and CRIU images older than an hour that no manifest names (a capture that died
   * between keeping the image and saving the manifest).
   */
  async removeStaleCaptures(): Promise<void> {
    for (const name of await readdir(join(this.root, 'tmp')).catch(() => [] as string[])) {
      const pid = Number(/^capture-(\d+)-/.exec(name)?.[1]);
      if (Number.isInteger(pid) && pid !== process.pid && existsSync(`/proc/${pid}`)) continue;
      if (pid === process.pid) continue;
      await rm(join(this.root, 'tmp', name), { recursive: true, force: true });
    }
    for (const ref of await readdir(join(this.root, 'memory')).catch(() => [] as string[])) {
      if (!isCheckpointRef(ref) || existsSync(this.path(ref))) continue;
      const age = Date.now() - (await stat(join(this.root, 'memory', ref)).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
      if (age > STALE_MEMORY_MS) await rm(join(this.root, 'memory', ref), { recursive: true, force: true });
    }
  }
}

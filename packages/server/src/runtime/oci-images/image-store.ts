import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_PATH } from '../container-policy.js';
import { RuntimeError } from '../runtime.js';
import type { ImagePullReport } from '../runtime.js';
import { parseImageRef } from '../registry/image-ref.js';
import { LayerRejectedError } from './layer-check.js';
import { unpackLayer } from './layer-unpack.js';
import { credentialKey, RegistryAccessCheck } from '../registry/registry-access-check.js';
import { RegistryClient } from '../registry/registry-client.js';
import type { Descriptor, RegistryClientOptions, RegistryCredentials } from '../registry/registry-client.js';
import { runTool } from '../run-tool.js';
import { pathExists } from '../../util/path-exists.js';
import { sha256File } from '../../util/sha256-file.js';

/** The parts of an image config a sandbox uses. */
export interface ImageConfig {
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir: string;
  user: string;
}

/** An image in the store: its layers (bottom first, sha256 hex of the layer blob) and config. */
export interface ImageRecord {
  /** Canonical reference (`127.0.0.1:5000/corral/busybox:latest`, `docker.io/library/busybox:latest`). */
  ref: string;
  /** Digest of the manifest (or of the imported tarball). */
  digest: string;
  layers: string[];
  config: ImageConfig;
  /** Where it came from: `registry`, `rootfs`, `oci-archive`, `docker-archive`. */
  source: string;
  /** Pulled with credentials: whoever uses it later must show the registry lets them pull it. */
  authenticated?: boolean;
  createdAt: string;
}

/** Options for {@link ImageStore}. */
export interface ImageStoreOptions extends RegistryClientOptions {
  /** Root directory: `layers/<hex>/`, `images/<key>.json`, `tmp/`. */
  root: string;
  /** Most bytes one pull may download, and separately unpack (default {@link DEFAULT_MAX_IMAGE_BYTES}). */
  maxImageBytes?: number;
}

/** Default cap on an image's compressed and on its decompressed layer bytes (8 GiB). */
export const DEFAULT_MAX_IMAGE_BYTES = 8 * 1024 ** 3;
/** Most layers an image may have (overlayfs stacks at most about 128 lower directories by name length anyway). */
export const MAX_IMAGE_LAYERS = 128;

/** Default config for images imported from a bare rootfs. */
export const DEFAULT_IMAGE_CONFIG: ImageConfig = {
  env: [`PATH=${DEFAULT_PATH}`],
  entrypoint: [],
  cmd: ['sh'],
  workingDir: '',
  user: '',
};

/**
 * A content-addressed image store for the OCI driver: pulls from registries (see
 * {@link RegistryClient}) and imports local tarballs, unpacking each layer once into
 * `layers/<sha256 hex>/` with overlayfs whiteouts, so sandboxes stack them read-only.
 * Concurrent requests for one image (or one layer) share the work. No Docker needed.
 */
export class ImageStore {
  readonly root: string;
  private readonly pulls = new Map<string, Promise<ImageRecord>>();
  private readonly layerJobs = new Map<string, Promise<number>>();
  private readonly access: RegistryAccessCheck;
  private readonly maxImageBytes: number;
  private readonly pullListeners = new Set<(report: ImagePullReport) => void>();

  constructor(private readonly options: ImageStoreOptions) {
    this.root = options.root;
    this.access = new RegistryAccessCheck(options);
    this.maxImageBytes = options.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES;
  }

  /** Subscribes to the registry pulls this store makes (not cached hits); returns the unsubscribe function. */
  onPull(listener: (report: ImagePullReport) => void): () => void {
    this.pullListeners.add(listener);
    return () => this.pullListeners.delete(listener);
  }

  /** Directory of an unpacked layer. */
  layerDir(hex: string): string {
    return join(this.root, 'layers', hex);
  }

  private recordPath(ref: string): string {
    return join(this.root, 'images', `${createHash('sha256').update(ref).digest('hex').slice(0, 32)}.json`);
  }

  /** The stored image for `reference`, or undefined. */
  async get(reference: string): Promise<ImageRecord | undefined> {
    const ref = parseImageRef(reference).canonical;
    try {
      const record = JSON.parse(await readFile(this.recordPath(ref), 'utf8')) as ImageRecord;
      for (const layer of record.layers) await stat(this.layerDir(layer));
      return record;
    } catch {
      return undefined;
    }
  }

  /** Every stored image. */
  async list(): Promise<ImageRecord[]> {
    const dir = join(this.root, 'images');
    const names = await readdir(dir).catch(() => [] as string[]);
    const out: ImageRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      try {
        out.push(JSON.parse(await readFile(join(dir, name), 'utf8')) as ImageRecord);
      } catch {
        // A record being written or corrupt: not an image.
      }
    }
    return out;
  }

  /**
   * The stored image, pulled first when missing. An image that was pulled with credentials is
   * handed out only after the registry confirms that `credentials` (or anonymous access, without
   * them) may pull it. Pull failures (unreachable registry, 404, bad credentials, digest mismatch,
   * bad layer, size caps) and refused access are `RuntimeError('IMAGE_PULL_FAILED')`.
   */
  async ensure(reference: string, credentials?: RegistryCredentials): Promise<ImageRecord> {
    let ref: string;
    try {
      ref = parseImageRef(reference).canonical;
    } catch (error) {
      throw new RuntimeError('IMAGE_PULL_FAILED', `cannot pull ${reference}: ${(error as Error).message}`, { cause: error });
    }
    const stored = await this.get(ref);
    if (!stored) return this.pull(ref, credentials);
    if (stored.authenticated === true) await this.access.check(parseImageRef(ref), credentials);
    return stored;
  }

  /**
   * Pulls `reference` from its registry (again, if stored). Concurrent pulls of one reference with
   * the same credentials share one download; with other credentials each pull asks the registry.
   */
  pull(reference: string, credentials?: RegistryCredentials): Promise<ImageRecord> {
    let ref: string;
    try {
      ref = parseImageRef(reference).canonical;
    } catch (error) {
      return Promise.reject(new RuntimeError('IMAGE_PULL_FAILED', `cannot pull ${reference}: ${(error as Error).message}`, { cause: error }));
    }
    const key = `${ref}\0${credentialKey(credentials)}`;
    let job = this.pulls.get(key);
    if (!job) {
      job = this.doPull(ref, credentials).finally(() => this.pulls.delete(key));
      this.pulls.set(key, job);
    }
    return job;
  }

  private async doPull(ref: string, credentials: RegistryCredentials | undefined): Promise<ImageRecord> {
    const started = performance.now();
    const counted = { downloaded: 0 };
    let ok = false;
    try {
      const record = await this.download(ref, credentials, counted);
      ok = true;
      return record;
    } finally {
      const report: ImagePullReport = { image: ref, seconds: (performance.now() - started) / 1000, bytes: counted.downloaded, ok };
      for (const listener of this.pullListeners) {
        try {
          listener(report);
        } catch {
          // A listener's failure is its own.
        }
      }
    }
  }

  private async download(ref: string, credentials: RegistryCredentials | undefined, counted: { downloaded: number }): Promise<ImageRecord> {
    const parsed = parseImageRef(ref);
    const client = new RegistryClient(parsed, credentials, this.options);
    try {
      const { digest, manifest } = await client.resolveManifest();
      if (manifest.layers.length > MAX_IMAGE_LAYERS) throw new Error(`the image has ${manifest.layers.length} layers, more than ${MAX_IMAGE_LAYERS}`);
      const declared = manifest.layers.reduce((sum, l) => sum + (typeof l.size === 'number' && l.size > 0 ? l.size : 0), 0);
      if (declared > this.maxImageBytes) throw new Error(`the image's layers are ${declared} bytes, more than the ${this.maxImageBytes} allowed`);
      const config = parseImageConfig(await client.fetchBlob(manifest.config.digest));
      const tmp = await this.tmpDir();
      try {
        const layers: string[] = [];
        let downloaded = 0;
        let unpacked = 0;
        for (const layer of manifest.layers) {
          checkLayerType(layer);
          const hex = hexOf(layer.digest);
          const budget = this.maxImageBytes - downloaded;
          const limit = typeof layer.size === 'number' && layer.size >= 0 ? Math.min(layer.size, budget) : budget;
          unpacked += await this.ensureLayer(hex, async () => {
            const blob = join(tmp, hex);
            await client.downloadBlob(layer.digest, blob, limit);
            const size = (await stat(blob)).size;
            downloaded += size;
            counted.downloaded += size;
            return blob;
          }, this.maxImageBytes - unpacked);
          layers.push(hex);
        }
        return await this.saveRecord({
          ref,
          digest,
          layers,
          config,
          source: 'registry',
          ...(credentials ? { authenticated: true } : {}),
          createdAt: new Date().toISOString(),
        });
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    } catch (error) {
      if (error instanceof RuntimeError) throw error;
      const reason = error instanceof LayerRejectedError ? `a layer was refused: ${error.message}` : (error as Error).message;
      throw new RuntimeError('IMAGE_PULL_FAILED', `pulling ${ref} failed: ${reason}`, { cause: error });
    }
  }

  /**
   * Unpacks a layer once (at most `maxBytes` decompressed): concurrent callers for the same digest
   * wait for the first. Returns the bytes unpacked, 0 when the layer was already there.
   */
  private async ensureLayer(hex: string, fetchBlob: () => Promise<string>, maxBytes = this.maxImageBytes): Promise<number> {
    if (await pathExists(this.layerDir(hex))) return 0;
    let job = this.layerJobs.get(hex);
    if (!job) {
      job = (async () => {
        const blob = await fetchBlob();
        // Layers are the host's copy of every image: not readable by other host users, whoever made the directory.
        await mkdir(join(this.root, 'layers'), { recursive: true, mode: 0o700 });
        await chmod(join(this.root, 'layers'), 0o700);
        return (await unpackLayer(blob, this.layerDir(hex), { maxBytes })).bytes;
      })().finally(() => this.layerJobs.delete(hex));
      this.layerJobs.set(hex, job);
    }
    return job;
  }

  /**
   * Stores a layer tarball content-addressed by its sha256 (unpacked once and checked like a pulled
   * layer; a layer already stored is not unpacked again). Returns its digest hex and the tarball's bytes.
   */
  async importLayer(tarPath: string, maxBytes = this.maxImageBytes): Promise<{ hex: string; tarBytes: number }> {
    const hex = await sha256File(tarPath);
    await this.ensureLayer(hex, () => Promise.resolve(tarPath), maxBytes);
    return { hex, tarBytes: (await stat(tarPath)).size };
  }

  /**
   * Imports a rootfs tarball (what `packages/server/src/images` builds) as a one-layer image named
   * `reference`. The layer's digest is the tarball's sha256, so re-importing is cheap.
   */
  async importRootfs(tarPath: string, reference: string, config: Partial<ImageConfig> = {}): Promise<ImageRecord> {
    const ref = parseImageRef(reference).canonical;
    const hex = await sha256File(tarPath);
    await this.ensureLayer(hex, () => Promise.resolve(tarPath));
    return this.saveRecord({
      ref,
      digest: `sha256:${hex}`,
      layers: [hex],
      config: { ...DEFAULT_IMAGE_CONFIG, ...config },
      source: 'rootfs',
      createdAt: new Date().toISOString(),
    });
  }

  /**
   * Imports an OCI image-layout tarball (`index.json` + `blobs/`) or a `docker save` tarball
   * (`manifest.json`). `reference` names the image in the store; when omitted, the archive's own
   * name (OCI `org.opencontainers.image.ref.name` or docker `RepoTags[0]`) is used.
   */
  async importArchive(archivePath: string, reference?: string): Promise<ImageRecord> {
    const tmp = await this.tmpDir();
    try {
      await runTool('tar', ['--extract', '--file', archivePath, '--directory', tmp, '--no-same-owner']);
      if (await pathExists(join(tmp, 'index.json'))) return await this.importOciLayout(tmp, reference);
      if (await pathExists(join(tmp, 'manifest.json'))) return await this.importDockerSave(tmp, reference);
      throw new Error(`${archivePath} is neither an OCI layout (index.json) nor a docker save archive (manifest.json)`);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * Imports an OCI layout directory as `reference`, taking the layers `known` maps (a layer
   * digest in the layout to a layer the store holds) from the store without reading their blobs
   * (which need not be there): a build's result shares its base layers. The layers it read from
   * blobs are `added`; `blobBytes` counts their blobs.
   */
  async importLayout(dir: string, reference: string, known: ReadonlyMap<string, string>): Promise<{ record: ImageRecord; added: string[]; blobBytes: number }> {
    const added: string[] = [];
    let blobBytes = 0;
    const record = await this.importOciLayout(dir, reference, async (digest) => {
      const hex = known.get(digest);
      if (hex !== undefined && (await pathExists(this.layerDir(hex)))) return hex;
      const path = join(dir, 'blobs', 'sha256', hexOf(digest));
      blobBytes += (await stat(path)).size;
      added.push(hexOf(digest));
      return undefined;
    });
    return { record, added, blobBytes };
  }

  private async importOciLayout(dir: string, reference: string | undefined, fromStore?: (digest: string) => Promise<string | undefined>): Promise<ImageRecord> {
    const blobPath = (digest: string): string => join(dir, 'blobs', 'sha256', hexOf(digest));
    const readJson = async <T>(digest: string): Promise<T> => {
      const path = blobPath(digest);
      const hex = await sha256File(path);
      if (`sha256:${hex}` !== digest) throw new Error(`blob ${digest} does not match its digest`);
      return JSON.parse(await readFile(path, 'utf8')) as T;
    };
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests?: (Descriptor & { annotations?: Record<string, string> })[] };
    const entries = index.manifests ?? [];
    const wantedTag = reference !== undefined ? parseImageRef(reference).tag : undefined;
    const entry =
      entries.find((m) => wantedTag !== undefined && m.annotations?.['org.opencontainers.image.ref.name'] === wantedTag) ?? entries[0];
    if (!entry) throw new Error('the OCI layout has no manifests');
    let manifest = await readJson<{ manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] }>(entry.digest);
    let digest = entry.digest;
    if (manifest.manifests) {
      const chosen = manifest.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === 'amd64') ?? manifest.manifests[0];
      if (!chosen) throw new Error('the OCI layout index is empty');
      digest = chosen.digest;
      manifest = await readJson(chosen.digest);
    }
    if (!manifest.config || !manifest.layers) throw new Error('unsupported manifest in the OCI layout');
    const config = parseImageConfig(await readFile(blobPath(manifest.config.digest)));
    const layers: string[] = [];
    for (const layer of manifest.layers) {
      checkLayerType(layer);
      const stored = await fromStore?.(layer.digest);
      if (stored !== undefined) {
        layers.push(stored);
        continue;
      }
      const hex = hexOf(layer.digest);
      await this.ensureLayer(hex, async () => {
        if ((await sha256File(blobPath(layer.digest))) !== hex) throw new Error(`layer ${layer.digest} does not match its digest`);
        return blobPath(layer.digest);
      });
      layers.push(hex);
    }
    const name = reference ?? entry.annotations?.['io.containerd.image.name'] ?? entry.annotations?.['org.opencontainers.image.ref.name'];
    if (name === undefined) throw new Error('the archive names no image; pass a reference');
    return this.saveRecord({ ref: parseImageRef(name).canonical, digest, layers, config, source: 'oci-archive', createdAt: new Date().toISOString() });
  }

  private async importDockerSave(dir: string, reference: string | undefined): Promise<ImageRecord> {
    const manifests = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { Config: string; RepoTags?: string[] | null; Layers: string[] }[];
    const wanted = reference !== undefined ? parseImageRef(reference).canonical : undefined;
    const entry = manifests.find((m) => (m.RepoTags ?? []).some((t) => wanted !== undefined && parseImageRef(t).canonical === wanted)) ?? manifests[0];
    if (!entry) throw new Error('manifest.json lists no images');
    const inside = (p: string): string => {
      if (p.includes('..')) throw new Error(`bad path in manifest.json: ${p}`);
      return join(dir, p);
    };
    const config = parseImageConfig(await readFile(inside(entry.Config)));
    const layers: string[] = [];
    for (const layerPath of entry.Layers) {
      const path = inside(layerPath);
      const hex = await sha256File(path);
      await this.ensureLayer(hex, () => Promise.resolve(path));
      layers.push(hex);
    }
    const name = reference ?? entry.RepoTags?.[0];
    if (name === undefined) throw new Error('the archive names no image; pass a reference');
    const digest = `sha256:${await sha256File(inside(entry.Config))}`;
    return this.saveRecord({ ref: parseImageRef(name).canonical, digest, layers, config, source: 'docker-archive', createdAt: new Date().toISOString() });
  }

  /** Stores `image`'s layers and config under another reference too (a copy, never marked as pulled with credentials). */
  async tag(image: ImageRecord, reference: string): Promise<ImageRecord> {
    const { authenticated: _authenticated, ...rest } = image;
    return this.saveRecord({ ...rest, ref: parseImageRef(reference).canonical, createdAt: new Date().toISOString() });
  }

  /** Forgets an image (its layers stay until {@link gc}). */
  async remove(reference: string): Promise<void> {
    await rm(this.recordPath(parseImageRef(reference).canonical), { force: true });
  }

  /**
   * Deletes every unpacked layer that no stored image references and that is not in `inUse`
   * (layers of running sandboxes whose image record was removed). With `minAgeMs`, only layers
   * unpacked at least that long ago: another process sharing the store may have just unpacked a
   * layer whose image record it has not written yet. Returns the removed digests.
   */
  async gc(inUse: Iterable<string> = [], minAgeMs = 0): Promise<string[]> {
    const keep = new Set(inUse);
    for (const record of await this.list()) for (const layer of record.layers) keep.add(layer);
    const dir = join(this.root, 'layers');
    const removed: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (keep.has(name) || this.layerJobs.has(name)) continue;
      if (minAgeMs > 0) {
        const info = await stat(join(dir, name)).catch(() => undefined);
        if (!info || Date.now() - info.ctimeMs < minAgeMs) continue;
      }
      if (name.startsWith('.tmp-')) {
        // Leftover of an interrupted unpack by a process that no longer exists.
        const pid = Number(name.split('-').at(-2));
        if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) continue;
        if (pid === process.pid && this.layerJobs.size > 0) continue;
      }
      await rm(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    }
    return removed;
  }

  private async saveRecord(record: ImageRecord): Promise<ImageRecord> {
    const path = this.recordPath(record.ref);
    await mkdir(join(this.root, 'images'), { recursive: true });
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(record, null, 2));
    await rename(tmp, path);
    return record;
  }

  private async tmpDir(): Promise<string> {
    await mkdir(join(this.root, 'tmp'), { recursive: true });
    return mkdtemp(join(this.root, 'tmp', 'op-'));
  }
}

/** Reads the interesting parts of an image config blob. */
export function parseImageConfig(raw: Buffer): ImageConfig {
  const parsed = JSON.parse(raw.toString('utf8')) as {
    config?: { Env?: string[] | null; Entrypoint?: string[] | null; Cmd?: string[] | null; WorkingDir?: string; User?: string };
    architecture?: string;
    os?: string;
  };
  const c = parsed.config ?? {};
  return {
    env: c.Env ?? DEFAULT_IMAGE_CONFIG.env,
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
    workingDir: c.WorkingDir ?? '',
    user: c.User ?? '',
  };
}

function checkLayerType(layer: Descriptor): void {
  const type = layer.mediaType ?? '';
  if (/foreign|nondistributable/.test(type) && !type.includes('tar')) throw new Error(`unsupported layer media type ${type}`);
  if (type !== '' && !/tar/.test(type)) throw new Error(`unsupported layer media type ${type}`);
}

function hexOf(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m?.[1]) throw new Error(`unsupported digest ${digest}`);
  return m[1];
}


function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

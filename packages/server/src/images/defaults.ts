import Docker from 'dockerode';
import { importRootfsToDocker, localImageLabels, pullImage } from './docker-images.js';
import type { DockerOptions } from './docker-images.js';
import { RECIPE_LABEL, RECIPES } from './recipes.js';
import type { RootfsKind } from './recipes.js';
import { buildRootfs, rootfsKey } from './rootfs.js';

/** An image users get by default, and the rootfs kind that stands in for it offline. */
export interface DefaultImage {
  readonly tag: string;
  readonly kind: RootfsKind;
}

/** The images {@link ensureDefaultImages} provides. `python:3.11-slim` is what sandboxes ask for by default. */
export const DEFAULT_IMAGES: readonly DefaultImage[] = [
  { tag: 'python:3.11-slim', kind: 'python' },
  { tag: 'busybox:latest', kind: 'busybox' },
];

/** Options for {@link ensureDefaultImages}. */
export interface EnsureDefaultImagesOptions {
  readonly docker?: Docker;
  /**
   * Try `docker pull` before building offline. Off by default (machines without a registry would
   * only send doomed traffic); `CORRAL_IMAGES_TRY_PULL=1` turns it on.
   */
  readonly tryPull?: boolean;
  /** Rebuild and re-import even when an up-to-date image is present. */
  readonly force?: boolean;
  /** Only these tags (default: all of {@link DEFAULT_IMAGES}). */
  readonly tags?: readonly string[];
  /** Provide these images instead of {@link DEFAULT_IMAGES} (e.g. other tags for the same kinds). */
  readonly images?: readonly DefaultImage[];
  readonly log?: (message: string) => void;
}

/** What {@link ensureDefaultImages} did for one image. */
export interface EnsureResult {
  readonly tag: string;
  readonly kind: RootfsKind;
  /**
   * `present`: already there (ours and current, or one from elsewhere, which is kept);
   * `pulled`: pulled from its registry; `built`: built offline and imported;
   * `rebuilt`: ours but from an older recipe, replaced.
   */
  readonly action: 'present' | 'pulled' | 'built' | 'rebuilt';
  /** The rootfs content key, when built or recognised as ours. */
  readonly key?: string;
  readonly ms: number;
}

async function localImageId(ref: string, options: DockerOptions): Promise<string | undefined> {
  try {
    return (await (options.docker ?? new Docker()).getImage(ref).inspect()).Id;
  } catch {
    return undefined;
  }
}

/** Removes a replaced image unless something (a container, another tag) still uses it. */
async function removeIfUnused(id: string, options: DockerOptions, log: (message: string) => void): Promise<void> {
  try {
    await (options.docker ?? new Docker()).getImage(id).remove({ force: false, noprune: false });
    log(`removed replaced image ${id.slice(0, 19)}`);
  } catch (error) {
    log(`kept replaced image ${id.slice(0, 19)}: ${(error as Error).message}`);
  }
}

/**
 * Makes sure the default images exist in the local Docker engine, building them offline (mmdebstrap
 * for python, busybox-static for busybox) when they are missing. Images built here carry the label
 * `io.corral.image.recipe=<key>`; an image without it (a real pulled one) is left alone.
 */
export async function ensureDefaultImages(options: EnsureDefaultImagesOptions = {}): Promise<EnsureResult[]> {
  const log = options.log ?? (() => undefined);
  const tryPull = options.tryPull ?? process.env['CORRAL_IMAGES_TRY_PULL'] === '1';
  const wanted = (options.images ?? DEFAULT_IMAGES).filter((image) => options.tags === undefined || options.tags.includes(image.tag));
  const results: EnsureResult[] = [];
  for (const { tag, kind } of wanted) {
    const started = Date.now();
    const dockerOptions = options.docker ? { docker: options.docker } : {};
    const labels = await localImageLabels(tag, dockerOptions);
    const key = await rootfsKey(kind);
    const ours = labels?.[RECIPE_LABEL];
    if (labels !== undefined && !options.force && (ours === undefined || ours === key)) {
      log(`${tag}: present${ours === undefined ? ' (not built by corral; kept)' : ''}`);
      results.push({ tag, kind, action: 'present', ...(ours !== undefined ? { key } : {}), ms: Date.now() - started });
      continue;
    }
    if (labels === undefined && tryPull) {
      try {
        log(`${tag}: pulling`);
        await pullImage(tag, dockerOptions);
        results.push({ tag, kind, action: 'pulled', ms: Date.now() - started });
        continue;
      } catch (error) {
        log(`${tag}: pull failed (${(error as Error).message}); building offline`);
      }
    }
    const rootfs = await buildRootfs(kind, undefined, { log });
    const recipe = RECIPES[kind];
    log(`${tag}: importing ${rootfs.cachedPath}`);
    const previousId = labels !== undefined ? await localImageId(tag, dockerOptions) : undefined;
    const id = await importRootfsToDocker(rootfs.cachedPath, tag, {
      ...dockerOptions,
      env: recipe.env,
      cmd: recipe.cmd,
      labels: { [RECIPE_LABEL]: rootfs.key },
    });
    if (previousId !== undefined && previousId !== id) await removeIfUnused(previousId, dockerOptions, log);
    results.push({ tag, kind, action: labels === undefined ? 'built' : 'rebuilt', key: rootfs.key, ms: Date.now() - started });
    log(`${tag}: ${labels === undefined ? 'built' : 'rebuilt'} in ${Date.now() - started} ms`);
  }
  return results;
}

import type { RuntimeImage, RuntimeImages } from '../runtime/runtime-images.js';
import { detectArchiveFormat } from '../runtime/image-archive.js';
import { RECIPE_LABEL, RECIPES, type RootfsKind } from './recipes.js';
import { buildRootfs, rootfsKey } from './rootfs.js';

/** The reference each offline-built image is tagged with by default. */
export const DEFAULT_TAGS: Readonly<Record<RootfsKind, string>> = { python: 'python:3.11-slim', busybox: 'busybox:latest' };

/**
 * Builds an image offline (`python`: Debian bookworm + python3 via mmdebstrap; `busybox`:
 * busybox-static) and imports it into `images` (a driver's store, from `createRuntimeImages`) under
 * `tag`. The rootfs tarball is cached, so a second build only re-imports.
 */
export async function buildImage(kind: RootfsKind, tag: string, images: RuntimeImages, log: (line: string) => void = () => undefined): Promise<RuntimeImage> {
  const rootfs = await buildRootfs(kind, undefined, { log });
  const recipe = RECIPES[kind];
  const image = await images.importRootfs(rootfs.path, tag, { env: recipe.env, cmd: recipe.cmd, labels: { [RECIPE_LABEL]: await rootfsKey(kind) } });
  return { ...image, source: `built ${kind}` };
}

/**
 * Imports an image file into `images`: a `docker save` tarball or an OCI layout (tarball or
 * directory) keeps its layers; anything else is taken as a plain rootfs tarball, which needs a `tag`.
 */
export async function importImage(path: string, tag: string | undefined, images: RuntimeImages): Promise<RuntimeImage> {
  let archive = true;
  try {
    await detectArchiveFormat(path);
  } catch {
    archive = false;
  }
  if (archive) return images.importArchive(path, tag);
  if (tag === undefined) throw new Error(`${path} is a rootfs tarball: give it a name with --tag`);
  return images.importRootfs(path, tag);
}

import { join } from 'node:path';
import { ImageStore } from '../runtime/oci/image-store.js';
import { detectArchiveFormat, importOciArchive, importRootfsToDocker, listLocalImages } from './docker-images.js';
import { RECIPE_LABEL, RECIPES, type RootfsKind } from './recipes.js';
import { buildRootfs, rootfsKey } from './rootfs.js';

/** Which runtime's image store an operation targets. */
export type ImageTarget = { runtime: 'docker' } | { runtime: 'oci'; stateDir: string };

/** The reference each offline-built image is tagged with by default. */
export const DEFAULT_TAGS: Readonly<Record<RootfsKind, string>> = { python: 'python:3.11-slim', busybox: 'busybox:latest' };

/** One image as `corral images list` shows it. */
export interface CatalogImage {
  reference: string;
  id: string;
  source: string;
}

function ociStore(target: { stateDir: string }): ImageStore {
  return new ImageStore({ root: join(target.stateDir, 'images') });
}

/**
 * Builds an image offline (`python`: Debian bookworm + python3 via mmdebstrap; `busybox`:
 * busybox-static) and imports it into the target runtime under `tag`. The rootfs tarball is cached,
 * so a second build only re-imports.
 */
export async function buildImage(kind: RootfsKind, tag: string, target: ImageTarget, log: (line: string) => void = () => undefined): Promise<CatalogImage> {
  const rootfs = await buildRootfs(kind, undefined, { log });
  const recipe = RECIPES[kind];
  if (target.runtime === 'docker') {
    const id = await importRootfsToDocker(rootfs.path, tag, {
      env: recipe.env,
      cmd: recipe.cmd,
      labels: { [RECIPE_LABEL]: await rootfsKey(kind) },
    });
    return { reference: tag, id, source: `built ${kind}` };
  }
  const record = await ociStore(target).importRootfs(rootfs.path, tag, { env: [...recipe.env], cmd: [...recipe.cmd] });
  return { reference: record.ref, id: record.digest, source: `built ${kind}` };
}

/**
 * Imports an image file into the target runtime: a `docker save` tarball or an OCI layout
 * (tarball or directory) keeps its layers; anything else is taken as a plain rootfs tarball.
 */
export async function importImage(path: string, tag: string | undefined, target: ImageTarget): Promise<CatalogImage> {
  let archive = true;
  try {
    await detectArchiveFormat(path);
  } catch {
    archive = false;
  }
  if (!archive && tag === undefined) throw new Error(`${path} is a rootfs tarball: give it a name with --tag`);
  if (target.runtime === 'docker') {
    if (archive) {
      const loaded = await importOciArchive(path, tag);
      return { reference: tag ?? loaded.references[0] ?? loaded.id, id: loaded.id, source: loaded.format };
    }
    const id = await importRootfsToDocker(path, tag as string);
    return { reference: tag as string, id, source: 'rootfs' };
  }
  const store = ociStore(target);
  const record = archive ? await store.importArchive(path, tag) : await store.importRootfs(path, tag as string);
  return { reference: record.ref, id: record.digest, source: record.source };
}

/** Images the target runtime has locally. */
export async function listImages(target: ImageTarget): Promise<CatalogImage[]> {
  if (target.runtime === 'docker') {
    return (await listLocalImages()).flatMap((image) => image.tags.map((reference) => ({ reference, id: image.id, source: 'docker' })));
  }
  return (await ociStore(target).list()).map((record) => ({ reference: record.ref, id: record.digest, source: record.source }));
}

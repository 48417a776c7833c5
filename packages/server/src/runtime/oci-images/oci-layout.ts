import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { sha256File } from '../../util/sha256-file.js';
import type { ImageRecord } from './image-store.js';

/** One layer of a layout written by {@link writeImageLayout}. */
export interface LayoutLayer {
  /** The store's layer it was archived from (`ImageStore.layerDir(hex)`). */
  hex: string;
  /** `sha256:<hex>` of the blob (the compressed archive when gzipped). */
  digest: string;
  /** `sha256:<hex>` of the uncompressed archive (the config's `diff_ids`). */
  diffId: string;
  /** Bytes of the blob. */
  size: number;
  mediaType: string;
}

/** What {@link writeImageLayout} wrote. */
export interface ImageLayout {
  /** `sha256:<hex>` of the manifest. */
  manifestDigest: string;
  layers: LayoutLayer[];
}

/**
 * Writes `record`, an image of the store, as an OCI image layout in `dir`, tagged `latest`: each of
 * its layers archived by `archive` (the store's unpacked layer `hex` into the tarball `out`: as
 * overlayfs has it for buildah's storage, or with OCI whiteouts for registries and engines), gzipped
 * when `gzip`, and a config holding the image's env, entrypoint, command, working directory and
 * user, with one history entry per layer (buildah checks their number).
 */
export async function writeImageLayout(
  record: ImageRecord,
  dir: string,
  archive: (hex: string, out: string) => Promise<void>,
  options: { gzip?: boolean } = {},
): Promise<ImageLayout> {
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const putFile = async (path: string): Promise<{ digest: string; size: number }> => {
    const hex = await sha256File(path);
    await rename(path, join(blobs, hex));
    return { digest: `sha256:${hex}`, size: (await stat(join(blobs, hex))).size };
  };
  const putJson = async (value: unknown): Promise<{ digest: string; size: number }> => {
    const path = join(dir, 'blob.json');
    await writeFile(path, JSON.stringify(value));
    return putFile(path);
  };
  const layers: LayoutLayer[] = [];
  for (const hex of record.layers) {
    const plain = join(dir, 'layer.tar');
    await archive(hex, plain);
    if (options.gzip === true) {
      const diffId = `sha256:${await sha256File(plain)}`;
      const compressed = join(dir, 'layer.tar.gz');
      await pipeline(createReadStream(plain), createGzip({ level: 6 }), createWriteStream(compressed));
      await rm(plain);
      layers.push({ hex, diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...(await putFile(compressed)) });
    } else {
      const blob = await putFile(plain);
      layers.push({ hex, diffId: blob.digest, mediaType: 'application/vnd.oci.image.layer.v1.tar', ...blob });
    }
  }
  const c = record.config;
  const config = await putJson({
    architecture: 'amd64',
    os: 'linux',
    created: record.createdAt,
    config: { Env: c.env, Entrypoint: c.entrypoint.length > 0 ? c.entrypoint : null, Cmd: c.cmd.length > 0 ? c.cmd : null, WorkingDir: c.workingDir, User: c.user },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created: record.createdAt, created_by: `corral image store: ${record.ref}` })),
  });
  const manifest = await putJson({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }),
  );
  return { manifestDigest: manifest.digest, layers };
}

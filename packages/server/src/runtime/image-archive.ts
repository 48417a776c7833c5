import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

/** Image archive formats the drivers import. */
export type ArchiveFormat = 'docker-archive' | 'oci-archive' | 'oci-dir';

/** Top-level entry names of a tar archive (read to its end, bodies skipped). */
async function tarEntryNames(path: string): Promise<Set<string>> {
  const names = new Set<string>();
  const extract = tar.extract();
  extract.on('entry', (header, body, next) => {
    names.add(header.name.replace(/^\.\//, ''));
    body.on('end', next);
    body.resume();
  });
  await pipeline(createReadStream(path), extract);
  return names;
}

/** Tells a `docker save` tarball from an OCI layout (tarball or directory); rejects anything else. */
export async function detectArchiveFormat(path: string): Promise<ArchiveFormat> {
  const info = await stat(path);
  if (info.isDirectory()) {
    try {
      await stat(join(path, 'index.json'));
      return 'oci-dir';
    } catch {
      throw new Error(`${path} is a directory without index.json: not an OCI layout`);
    }
  }
  const names = await tarEntryNames(path);
  if (names.has('manifest.json')) return 'docker-archive';
  if (names.has('index.json') && names.has('oci-layout')) return 'oci-archive';
  throw new Error(`${path} is neither a docker-save archive (manifest.json) nor an OCI layout (index.json + oci-layout)`);
}

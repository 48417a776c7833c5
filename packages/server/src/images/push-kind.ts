import { rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { RegistryCredentials } from '../runtime/registry/registry-client.js';
import { buildOciLayout, pushToRegistry } from './oci.js';
import { ociCacheDir } from './paths.js';
import { RECIPE_LABEL, RECIPES } from './recipes.js';
import type { RootfsKind } from './recipes.js';
import { buildRootfs } from './rootfs.js';

/**
 * The OCI layout of a rootfs kind (ref `latest`), built with umoci from the cached rootfs and itself
 * cached under `<cache>/images/oci/<key>`. Returns the layout directory.
 */
export async function ensureOciLayout(kind: RootfsKind, log?: (message: string) => void): Promise<string> {
  const rootfs = await buildRootfs(kind, undefined, log ? { log } : {});
  const dir = join(ociCacheDir(), rootfs.key);
  try {
    await stat(join(dir, 'index.json'));
    return dir;
  } catch {
    // not built yet
  }
  const recipe = RECIPES[kind];
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await buildOciLayout(rootfs.cachedPath, tmp, 'latest', { env: recipe.env, cmd: recipe.cmd, labels: { [RECIPE_LABEL]: rootfs.key } });
  try {
    await rename(tmp, dir);
  } catch (error) {
    // Another process finished first: keep its layout.
    await rm(tmp, { recursive: true, force: true });
    if ((error as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return dir;
}

/** Builds (cached) the image of a rootfs kind and pushes it to `destination` (`docker://host:port/name:tag`). */
export async function pushRootfsImage(
  kind: RootfsKind,
  destination: string,
  options: { readonly credentials?: RegistryCredentials; readonly log?: (message: string) => void } = {},
): Promise<void> {
  const layout = await ensureOciLayout(kind, options.log);
  await pushToRegistry(layout, destination, { ref: 'latest', ...(options.credentials ? { credentials: options.credentials } : {}) });
}

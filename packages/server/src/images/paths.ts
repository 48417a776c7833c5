import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository root: the nearest ancestor of this module that holds the workspace `package.json`
 * (`"name": "corral"`), or the current directory when this module runs outside a checkout.
 */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        const parsed: unknown = JSON.parse(readFileSync(manifest, 'utf8'));
        if (typeof parsed === 'object' && parsed !== null && (parsed as { name?: unknown }).name === 'corral') return dir;
      } catch {
        // An unreadable manifest is not the root; keep walking up.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
}

/** The project's cache directory: `$CORRAL_CACHE_DIR`, or `<repo>/.cache` (gitignored). */
export function cacheDir(): string {
  const fromEnv = process.env['CORRAL_CACHE_DIR'];
  return fromEnv !== undefined && fromEnv !== '' ? resolve(fromEnv) : join(repoRoot(), '.cache');
}

/** Where built rootfs tarballs are kept: `<cache>/images/rootfs`. */
export function rootfsCacheDir(): string {
  return join(cacheDir(), 'images', 'rootfs');
}

/** Where OCI layouts built for registry pushes are kept: `<cache>/images/oci`. */
export function ociCacheDir(): string {
  return join(cacheDir(), 'images', 'oci');
}

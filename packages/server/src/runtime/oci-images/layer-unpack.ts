import { lstat, mkdir, realpath, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { checkLayer, OPAQUE_MARKER, WHITEOUT_PREFIX } from './layer-check.js';
import type { LayerWhiteout } from './layer-check.js';
import { runTool } from '../run-tool.js';
import { pathExists } from '../../util/path-exists.js';

/** Default cap on one layer's decompressed bytes when the caller names none (8 GiB). */
export const DEFAULT_LAYER_MAX_BYTES = 8 * 1024 ** 3;

/** Options for {@link unpackLayer}. */
export interface UnpackOptions {
  /** Most decompressed bytes the layer may hold (default {@link DEFAULT_LAYER_MAX_BYTES}). */
  maxBytes?: number;
}

/**
 * Unpacks a layer tarball (plain, gzip or zstd) into `dest`, owners and modes preserved, then
 * converts the OCI whiteouts into overlayfs ones so the directory can be stacked as an overlay lowerdir:
 * - `.wh.<name>` → a 0/0 character device `<name>` (overlayfs' "deleted" marker);
 * - `.wh..wh..opq` → the xattr `trusted.overlay.opaque=y` on its directory.
 * The archive is checked first ({@link checkLayer}): a layer with a path that leaves it, an entry
 * below one of its own symlinks, a malformed whiteout or too many bytes is refused
 * (`LayerRejectedError`) before anything is written. Unpacks into a sibling temporary directory and
 * renames it into place, so `dest` either does not exist or is complete; a refused or failed unpack
 * leaves nothing behind. Returns whether this call created `dest` (false when another process
 * completed it first) and the layer's decompressed bytes.
 */
export async function unpackLayer(tarPath: string, dest: string, options: UnpackOptions = {}): Promise<{ created: boolean; bytes: number }> {
  if (await pathExists(dest)) return { created: false, bytes: 0 };
  const { whiteouts, bytes } = await checkLayer(tarPath, options.maxBytes ?? DEFAULT_LAYER_MAX_BYTES);
  const tmp = join(dirname(dest), `.tmp-${basename(dest)}-${process.pid}-${Math.random().toString(36).slice(2)}`);
  await mkdir(tmp, { recursive: true });
  try {
    // GNU tar also refuses members with `..` and extracts absolute or `..` symlinks as placeholders
    // until the end, so even an archive read differently than checkLayer read it stays in `tmp`.
    // Only user.* and security.capability xattrs are taken: a layer must not be able to set
    // overlayfs' own trusted.overlay.* attributes.
    await runTool('tar', [
      '--extract',
      '--file',
      tarPath,
      '--directory',
      tmp,
      '--numeric-owner',
      '--same-owner',
      '--preserve-permissions',
      '--xattrs',
      '--xattrs-include=user.*',
      '--xattrs-include=security.capability',
      '--same-permissions',
    ]);
    await convertWhiteouts(tmp, whiteouts);
    try {
      await rename(tmp, dest);
    } catch (error) {
      if (await pathExists(dest)) return { created: false, bytes };
      throw error;
    }
    return { created: true, bytes };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Rewrites the whiteouts `checkLayer` found under `root` as overlayfs whiteouts. Only those
 * validated names are touched, each in a directory that must resolve to itself under `root`
 * (no symlink on the way), and nothing is followed: a whiteout's target is removed as a link.
 */
export async function convertWhiteouts(root: string, whiteouts: readonly LayerWhiteout[]): Promise<{ whiteouts: number; opaque: number }> {
  const realRoot = await realpath(root);
  // Deepest first, so a whiteout inside an opaque directory is handled before its parent changes.
  const ordered = [...whiteouts].sort((a, b) => b.dir.length - a.dir.length);
  let count = 0;
  let opaque = 0;
  for (const whiteout of ordered) {
    const dir = join(realRoot, ...whiteout.dir);
    if ((await realpath(dir).catch(() => '')) !== dir) throw new Error(`whiteout directory ${whiteout.dir.join('/')} is not a directory of the layer`);
    const marker = join(dir, whiteout.hides === null ? OPAQUE_MARKER : `${WHITEOUT_PREFIX}${whiteout.hides}`);
    const info = await lstat(marker).catch(() => undefined);
    if (info?.isFile()) await unlink(marker);
    if (whiteout.hides === null) {
      await runTool('setfattr', ['-h', '-n', 'trusted.overlay.opaque', '-v', 'y', dir]);
      opaque++;
    } else {
      const target = join(dir, whiteout.hides);
      await rm(target, { recursive: true, force: true });
      await runTool('mknod', ['-m', '0', target, 'c', '0', '0']);
      count++;
    }
  }
  return { whiteouts: count, opaque };
}


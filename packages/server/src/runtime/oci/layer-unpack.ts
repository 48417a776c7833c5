import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { runTool } from './run-tool.js';

/** Name prefix of a whiteout entry in an image layer. */
const WHITEOUT_PREFIX = '.wh.';
/** Entry marking its directory opaque (hides everything below it in lower layers). */
const OPAQUE_MARKER = '.wh..wh..opq';

/**
 * Unpacks a layer tarball (plain, gzip or zstd: GNU tar detects the compression from the magic
 * bytes and runs `gzip`/`zstd`) into `dest`, owners and modes preserved, then converts the OCI
 * whiteouts into overlayfs ones so the directory can be stacked as an overlay lowerdir:
 * - `.wh.<name>` → a 0/0 character device `<name>` (overlayfs' "deleted" marker);
 * - `.wh..wh..opq` → the xattr `trusted.overlay.opaque=y` on its directory.
 * Unpacks into a sibling temporary directory and renames it into place, so `dest` either does not
 * exist or is complete. Returns false when another process completed `dest` first.
 */
export async function unpackLayer(tarPath: string, dest: string): Promise<boolean> {
  if (await exists(dest)) return false;
  const tmp = join(dirname(dest), `.tmp-${basename(dest)}-${process.pid}-${Math.random().toString(36).slice(2)}`);
  await mkdir(tmp, { recursive: true });
  try {
    // GNU tar refuses members with `..` and extracts absolute or `..` symlinks as placeholders until the
    // end, so an archive cannot write outside `tmp`. Only user.* and security.capability xattrs are
    // taken: a layer must not be able to set overlayfs' own trusted.overlay.* attributes.
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
    await convertWhiteouts(tmp);
    try {
      await rename(tmp, dest);
    } catch (error) {
      if (await exists(dest)) return false;
      throw error;
    }
    return true;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Rewrites the OCI whiteout files under `root` as overlayfs whiteouts. */
export async function convertWhiteouts(root: string): Promise<{ whiteouts: number; opaque: number }> {
  const { stdout } = await runTool('find', [root, '-name', `${WHITEOUT_PREFIX}*`, '-print0']);
  const paths = stdout.split('\0').filter((p) => p !== '');
  // Deepest first, so a whiteout inside an opaque directory is handled before its parent changes.
  paths.sort((a, b) => b.length - a.length);
  let whiteouts = 0;
  let opaque = 0;
  for (const path of paths) {
    const name = basename(path);
    const dir = dirname(path);
    await rm(path, { recursive: true, force: true });
    if (name === OPAQUE_MARKER) {
      await runTool('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', dir]);
      opaque++;
    } else {
      const target = join(dir, name.slice(WHITEOUT_PREFIX.length));
      await rm(target, { recursive: true, force: true });
      await runTool('mknod', ['-m', '0', target, 'c', '0', '0']);
      whiteouts++;
    }
  }
  return { whiteouts, opaque };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

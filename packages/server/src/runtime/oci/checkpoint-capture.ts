import { lstat, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { runTool } from '../run-tool.js';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from './layer-check.js';
import type { UsernsMapping } from './userns.js';

/**
 * Copies an overlay upper directory to `staging` (which must not exist) with everything overlayfs
 * and the layer need: modes, owners, timestamps, symlinks, hard links, device nodes (whiteouts),
 * all xattrs (`trusted.overlay.opaque` included, as root), holes of sparse files, and reflinks
 * where the two directories share a filesystem that can. This is what runs while the sandbox is
 * frozen.
 */
export async function copyUpper(upper: string, staging: string): Promise<void> {
  await runTool('cp', ['-a', '--reflink=auto', '--sparse=always', '--no-target-directory', '--', upper, staging]);
}

/** What {@link writeLayerTar} did. */
export interface LayerTarResult {
  whiteouts: number;
  opaque: number;
  entries: number;
}

/** Options for {@link writeLayerTar}. */
export interface LayerTarOptions {
  /** Paths (relative to the upper root) left out of the layer: the sandbox's own /etc files. */
  exclude: readonly string[];
  /** The user namespace the upper was written through: its host ids become 0…size-1 again. */
  userns?: UsernsMapping | null;
}

/**
 * Turns a copied overlay upper directory (`staging`, changed in place) into an OCI layer tarball
 * at `out`: overlay whiteouts (0/0 character devices) become `.wh.<name>` entries, opaque
 * directories (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry, `exclude`d paths are left
 * out, and owners written through the user namespace are shifted back to the sandbox's own ids.
 * PAX format, entries sorted by name, atime/ctime dropped, holes kept: the same tree gives the
 * same bytes (and so the same digest). Refuses an upper that uses overlayfs features a layer
 * cannot express (redirected directories, metacopy files).
 */
export async function writeLayerTar(staging: string, out: string, options: LayerTarOptions): Promise<LayerTarResult> {
  // Directories this changes keep their times, and the markers get fixed ones: the same upper gives the same bytes.
  const touched = new Map<string, Date>();
  const touch = async (dir: string): Promise<void> => {
    if (!touched.has(dir)) touched.set(dir, (await lstat(dir)).mtime);
  };
  for (const path of options.exclude) {
    const full = join(staging, path);
    if (!(await lstat(full).catch(() => undefined))) continue;
    await touch(dirname(full));
    await rm(full, { force: true });
  }
  const attrs = await overlayXattrs(staging);
  const opaque: string[] = [];
  for (const [path, names] of attrs) {
    if (names.has('trusted.overlay.redirect') || names.has('trusted.overlay.metacopy')) {
      throw new Error(`${path.slice(staging.length) || '/'} uses an overlayfs feature a layer cannot hold (redirect or metacopy)`);
    }
    if (names.get('trusted.overlay.opaque') === 'y') opaque.push(path);
  }
  const uids = new Set<number>();
  const gids = new Set<number>();
  const whiteouts: string[] = [];
  let entries = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const info = await lstat(path);
      entries++;
      uids.add(info.uid);
      gids.add(info.gid);
      if (entry.isCharacterDevice() && info.rdev === 0) whiteouts.push(path);
      else if (entry.isDirectory()) await walk(path);
    }
  };
  const top = await lstat(staging);
  uids.add(top.uid);
  gids.add(top.gid);
  await walk(staging);
  const markers: string[] = [];
  for (const path of whiteouts) {
    await touch(dirname(path));
    await rm(path, { force: true });
    const marker = join(dirname(path), `${WHITEOUT_PREFIX}${basename(path)}`);
    await writeFile(marker, '', { mode: 0o600 });
    markers.push(marker);
  }
  for (const dir of opaque) {
    await touch(dir);
    await writeFile(join(dir, OPAQUE_MARKER), '', { mode: 0o600 });
    markers.push(join(dir, OPAQUE_MARKER));
  }
  const epoch = new Date(0);
  for (const marker of markers) await utimes(marker, epoch, epoch);
  for (const [dir, mtime] of touched) await utimes(dir, mtime, mtime);
  const args = [
    '--create',
    '--file',
    out,
    '--directory',
    staging,
    '--format=posix',
    '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
    '--sort=name',
    '--numeric-owner',
    '--sparse',
    '--xattrs',
    '--xattrs-include=user.*',
  ];
  const userns = options.userns;
  if (userns) {
    const owners = idMap(uids, userns.hostUid, userns.size);
    const groups = idMap(gids, userns.hostGid, userns.size);
    const ownerFile = `${out}.owners`;
    const groupFile = `${out}.groups`;
    await Promise.all([writeFile(ownerFile, owners), writeFile(groupFile, groups)]);
    args.push(`--owner-map=${ownerFile}`, `--group-map=${groupFile}`);
  } else {
    // File capabilities written from the host's namespace stay valid in a layer; ones written from a user namespace name its host root id.
    args.push('--xattrs-include=security.capability');
  }
  args.push('.');
  try {
    await runTool('tar', args);
  } finally {
    await rm(`${out}.owners`, { force: true });
    await rm(`${out}.groups`, { force: true });
  }
  return { whiteouts: whiteouts.length, opaque: opaque.length, entries };
}

/** A GNU tar `--owner-map`/`--group-map` file: each seen id within the mapping back to the sandbox's own id. */
function idMap(ids: Set<number>, base: number, size: number): string {
  const lines: string[] = [];
  for (const id of [...ids].sort((a, b) => a - b)) {
    if (id >= base && id < base + size) lines.push(`+${id} +${id - base}`);
  }
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

/** The `trusted.overlay.*` xattrs under `root` (symlinks not followed), by absolute path. */
async function overlayXattrs(root: string): Promise<Map<string, Map<string, string>>> {
  const { stdout } = await runTool('getfattr', ['--recursive', '--physical', '--no-dereference', '--absolute-names', '--dump', '--match=^trusted\\.overlay\\.', '--encoding=text', '--', root]);
  const result = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map();
      result.set(unescapeGetfattr(line.slice('# file: '.length)), current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq <= 0) continue;
    const value = line.slice(eq + 1).replace(/^"(.*)"$/, '$1');
    current.set(line.slice(0, eq), value);
  }
  return result;
}

/** getfattr writes unusual bytes of a path as `\ooo` octal escapes. */
function unescapeGetfattr(path: string): string {
  return Buffer.from(
    path.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8))),
    'latin1',
  ).toString('utf8');
}

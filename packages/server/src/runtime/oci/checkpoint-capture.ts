import { chmod, lchown, lstat, mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { runTool } from '../run-tool.js';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from '../oci-images/layer-check.js';
import { readOverlayXattrs } from '../oci-images/layer-pack.js';
import type { UsernsMapping } from './userns.js';

/**
 * Copies an overlay upper directory to `staging` (which must not exist) with everything overlayfs
 * and the layer need: modes, owners, times, symlinks, hard links, device nodes (whiteouts), every
 * xattr (`trusted.overlay.opaque` included, as root) and the holes of sparse files. Safe while the
 * sandbox runs and changes the tree: GNU tar walks it through directory descriptors with
 * `O_NOFOLLOW` (`openat`), so a directory swapped for a symlink mid-copy is never followed out of
 * the upper (a path-based copy such as `cp -a` would read host files through it). No reflinks: the
 * upper is on the sandbox's loop disk, another filesystem than the staging directory.
 */
export async function copyUpper(upper: string, staging: string): Promise<void> {
  await mkdir(staging, { mode: 0o700 });
  // The sandbox runs: files change and go while tar reads them, which it reports with status 1
  // ("some files differ"; 2 is a real failure). The frozen pass copies those again.
  await runTool('bash', [
    '-c',
    'tar --create --file=- --directory="$1" --format=posix --numeric-owner --sparse --xattrs "--xattrs-include=*" --ignore-failed-read --warning=no-file-changed --warning=no-file-removed --warning=no-file-shrank . | tar --extract --file=- --directory="$2" --numeric-owner --same-owner --preserve-permissions --xattrs "--xattrs-include=*"; status=("${PIPESTATUS[@]}"); [ "${status[0]}" -le 1 ] && [ "${status[1]}" -eq 0 ]',
    'corral-copy-upper',
    upper,
    staging,
  ]);
}

/** One entry of a directory tree, as {@link indexTree} saw it. */
export interface IndexEntry {
  ino: bigint;
  /** Inode change time (ns): any change of content, metadata, xattrs or links moves it; userspace cannot set it. */
  ctimeNs: bigint;
  /** File type bits (`mode & S_IFMT`). */
  type: bigint;
}

const S_IFMT = 0o170000n;
const S_IFDIR = 0o040000n;
/**
 * Entries changed this close before the first pass's index are copied again while frozen: a
 * change in the same tick of the kernel's coarse clock as the index's read can leave the ctime it
 * read (kernels before multigrain timestamps). Far more than a tick, far less than a write burst.
 */
const CTIME_MARGIN_MS = 50;
/** How many paths one `cp` of the frozen pass gets. */
const CP_BATCH = 500;

/** Entries of a directory tree by relative path (`a/b`, no leading `./`). */
export type TreeIndex = ReadonlyMap<string, IndexEntry>;

/** Every entry under `root` by relative path (symlinks not followed). */
async function indexTree(root: string): Promise<Map<string, IndexEntry>> {
  const index = new Map<string, IndexEntry>();
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(root, rel), { withFileTypes: true })) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      const info = await lstat(join(root, path), { bigint: true });
      index.set(path, { ino: info.ino, ctimeNs: info.ctimeNs, type: info.mode & S_IFMT });
      if (entry.isDirectory()) await walk(path);
    }
  };
  await walk('');
  return index;
}

/** What {@link precopyUpper} copied while the sandbox ran, for {@link syncFrozen}. */
export interface Precopy {
  /** The copy's own entries. */
  staging: Map<string, IndexEntry>;
  /** When the copy started (ms since the epoch). */
  since: number;
}

/**
 * First pass of a capture, while the sandbox runs: copies the upper to `staging`
 * ({@link copyUpper}). What changes meanwhile is found and copied again by {@link syncFrozen}.
 * Nothing here walks the running upper by path.
 */
export async function precopyUpper(upper: string, staging: string): Promise<Precopy> {
  const since = Date.now();
  await copyUpper(upper, staging);
  return { staging: await indexTree(staging), since };
}

/**
 * Second pass, while the sandbox is frozen (nothing changes the upper, so paths are safe to
 * follow): brings `staging` to exactly the upper's state. An entry is copied again when the copy
 * lacks it or has another type, or its ctime is at or after the first pass's start less
 * {@link CTIME_MARGIN_MS} (any change of content, metadata, xattrs, links or name moves the
 * ctime, which userspace cannot set; the margin covers a change in the same coarse clock tick as
 * the copy's read); entries gone from the upper are removed. A directory that is not new only gets
 * its owner, mode and times back after its entries changed.
 */
export async function syncFrozen(upper: string, staging: string, pre: Precopy): Promise<{ copied: number; removed: number; index: TreeIndex }> {
  const now = await indexTree(upper);
  const horizon = BigInt(pre.since - CTIME_MARGIN_MS) * 1_000_000n;
  let removed = 0;
  for (const path of pre.staging.keys()) {
    if (now.has(path)) continue;
    // A parent removed first took this one along: rm is forced.
    await rm(join(staging, path), { recursive: true, force: true });
    removed++;
  }
  const copy: string[] = [];
  const copiedDirs = new Set<string>();
  const dirAttrs: string[] = [];
  for (const [path, entry] of now) {
    const copied = pre.staging.get(path);
    if (copied !== undefined && copied.type === entry.type && entry.ctimeNs < horizon) continue;
    if (entry.type === S_IFDIR && copied?.type === S_IFDIR && !underCopied(path, copiedDirs)) {
      dirAttrs.push(path);
      continue;
    }
    // A new or replaced directory is copied whole (with its opaque xattr); nothing below it needs its own copy.
    if (underCopied(path, copiedDirs)) continue;
    await rm(join(staging, path), { recursive: true, force: true });
    copy.push(path);
    if (entry.type === S_IFDIR) copiedDirs.add(path);
  }
  for (let i = 0; i < copy.length; i += CP_BATCH) {
    await runTool('sh', [
      '-c',
      'cd -- "$1" && dest=$2 && shift 2 && exec cp -a --reflink=auto --sparse=always --parents -- "$@" "$dest"',
      'corral-sync',
      upper,
      staging,
      ...copy.slice(i, i + CP_BATCH),
    ]);
  }
  // A directory made anew since the copy may have become opaque; its user xattrs may have changed.
  for (let i = 0; i < dirAttrs.length; i += CP_BATCH) {
    const { stdout } = await runTool('getfattr', ['--absolute-names', '--no-dereference', '--dump', '--encoding=hex', '--match=^(trusted\\.overlay\\.opaque|user\\..*)$', '--', ...dirAttrs.slice(i, i + CP_BATCH).map((p) => join(upper, p))]);
    const prefix = `# file: ${upper}/`;
    const dump = stdout.split('\n').map((line) => (line.startsWith(prefix) ? `# file: ${staging}/${line.slice(prefix.length)}` : line)).join('\n');
    if (dump.trim() !== '') await runTool('setfattr', ['--no-dereference', '--restore=-'], { input: dump });
  }
  // Deepest first: setting a directory's times must come after its entries changed.
  for (const path of dirAttrs.sort((a, b) => b.length - a.length)) {
    const info = await lstat(join(upper, path));
    const target = join(staging, path);
    await lchown(target, info.uid, info.gid);
    await chmod(target, info.mode & 0o7777);
    await utimes(target, info.atime, info.mtime);
  }
  const top = await lstat(upper);
  await lchown(staging, top.uid, top.gid);
  await chmod(staging, top.mode & 0o7777);
  await utimes(staging, top.atime, top.mtime);
  return { copied: copy.length, removed, index: now };
}

/** Whether a parent directory of `path` is in `dirs`. */
function underCopied(path: string, dirs: Set<string>): boolean {
  for (let slash = path.indexOf('/'); slash > 0; slash = path.indexOf('/', slash + 1)) {
    if (dirs.has(path.slice(0, slash))) return true;
  }
  return false;
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
  /**
   * Store only what changed since an earlier capture of the same upper: `before` indexed the
   * upper at that capture, `now` at this one. The layer then goes on top of that capture's
   * layers: entries whose inode, type and ctime are unchanged are left out (their directories are
   * kept for their attributes), and entries gone since get `.wh.` whiteouts.
   */
  since?: IncrementalBase;
}

/** What an incremental layer is relative to (see {@link LayerTarOptions.since}). */
export interface IncrementalBase {
  /** The upper at the earlier capture's frozen pass. */
  before: TreeIndex;
  /** The upper at this capture's frozen pass. */
  now: TreeIndex;
  /** Entries whose ctime is at or after this (ms since the epoch; the earlier freeze, less a margin) count as changed. */
  changedSinceMs: number;
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
  const attrs = await readOverlayXattrs(staging);
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
  const listFile = `${out}.list`;
  if (options.since) {
    const members = await changedMembers(staging, options.since, new Set(options.exclude), {
      whiteouts: new Set(whiteouts.map((p) => relative(staging, p))),
      opaque: new Set(opaque.map((p) => relative(staging, p))),
    });
    await writeFile(listFile, ['.', ...members.map((m) => `./${m}`)].join('\0'));
    args.push('--no-recursion', '--null', `--files-from=${listFile}`);
  } else {
    args.push('.');
  }
  try {
    await runTool('tar', args);
  } finally {
    await rm(`${out}.owners`, { force: true });
    await rm(`${out}.groups`, { force: true });
    await rm(listFile, { force: true });
  }
  return { whiteouts: whiteouts.length, opaque: opaque.length, entries };
}

/**
 * The members (relative paths, sorted) of an incremental layer: entries new or changed since
 * `before` (whiteouts as their `.wh.` file, opaque directories with their marker), each with its
 * parent directories, and a `.wh.` marker, written into `staging`, for each topmost entry gone
 * since (below a directory that is still the same kind of entry).
 */
async function changedMembers(
  staging: string,
  since: IncrementalBase,
  excluded: ReadonlySet<string>,
  converted: { whiteouts: ReadonlySet<string>; opaque: ReadonlySet<string> },
): Promise<string[]> {
  const { before, now } = since;
  const recent = BigInt(since.changedSinceMs - CTIME_MARGIN_MS) * 1_000_000n;
  const chosen = new Set<string>();
  const add = (rel: string): void => {
    chosen.add(rel);
    for (let slash = rel.lastIndexOf('/'); slash > 0; slash = rel.lastIndexOf('/', slash - 1)) chosen.add(rel.slice(0, slash));
  };
  const marker = (rel: string): string => {
    const slash = rel.lastIndexOf('/');
    return slash < 0 ? `${WHITEOUT_PREFIX}${rel}` : `${rel.slice(0, slash)}/${WHITEOUT_PREFIX}${rel.slice(slash + 1)}`;
  };
  for (const [rel, entry] of now) {
    if (excluded.has(rel)) continue;
    const prev = before.get(rel);
    if (prev && prev.ino === entry.ino && prev.type === entry.type && prev.ctimeNs === entry.ctimeNs && entry.ctimeNs < recent) continue;
    add(converted.whiteouts.has(rel) ? marker(rel) : rel);
    if (converted.opaque.has(rel)) add(`${rel}/${OPAQUE_MARKER}`);
  }
  const epoch = new Date(0);
  const underLiveDir = (rel: string): boolean => {
    for (let slash = rel.indexOf('/'); slash > 0; slash = rel.indexOf('/', slash + 1)) {
      if (now.get(rel.slice(0, slash))?.type !== S_IFDIR) return false;
    }
    return true;
  };
  for (const rel of before.keys()) {
    if (now.has(rel) || excluded.has(rel) || !underLiveDir(rel)) continue;
    const path = join(staging, marker(rel));
    const parent = await lstat(dirname(path));
    await writeFile(path, '', { mode: 0o600 });
    await utimes(path, epoch, epoch);
    await utimes(dirname(path), parent.atime, parent.mtime);
    add(marker(rel));
  }
  return [...chosen].sort();
}

/** A GNU tar `--owner-map`/`--group-map` file: each seen id within the mapping back to the sandbox's own id. */
function idMap(ids: Set<number>, base: number, size: number): string {
  const lines: string[] = [];
  for (const id of [...ids].sort((a, b) => a - b)) {
    if (id >= base && id < base + size) lines.push(`+${id} +${id - base}`);
  }
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

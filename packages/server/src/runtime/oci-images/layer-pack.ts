import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from './layer-check.js';
import { runTool } from '../run-tool.js';

/**
 * Extended headers without what changes between two archives of one tree (access and change
 * times, the archiving process's pid in the header names).
 */
const DETERMINISTIC_PAX = ['--format=posix', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime'];

/** A layer tarball written by {@link packOverlayLayer}. */
export interface PackedLayer {
  /** `sha256:<hex>` of the tarball (uncompressed: also its diff id). */
  digest: string;
  /** Bytes of the tarball. */
  size: number;
}

/** Overlayfs' markers in a layer directory, as paths relative to it. */
export interface OverlayMarkers {
  /** Deleted entries: 0/0 character devices. */
  whiteouts: string[];
  /** Directories that hide what lies below them (`trusted.overlay.opaque=y`). */
  opaque: string[];
}

/**
 * overlayfs' own attributes (`trusted.overlay.*`) of every entry under `root` that has any, by
 * absolute path: attribute name to value. Links are not followed.
 */
export async function readOverlayXattrs(root: string): Promise<Map<string, Map<string, string>>> {
  // getfattr dumps only the entries that carry a matching attribute, names escaped as
  // {@link unescapeGetfattr} reads them (the C locale keeps its output the same whatever the server's).
  const { stdout } = await runTool(
    'env',
    ['LC_ALL=C', 'getfattr', '--recursive', '--physical', '--no-dereference', '--absolute-names', '--dump', '--match=^trusted\\.overlay\\.', '--encoding=text', '--', root],
    { timeoutMs: 600_000 },
  );
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
    current.set(line.slice(0, eq), line.slice(eq + 1).replace(/^"(.*)"$/, '$1'));
  }
  return result;
}

/**
 * A path as getfattr writes it: control characters and backslashes as `\ooo` octal escapes of their
 * bytes, other bytes as they are (read here as UTF-8).
 */
function unescapeGetfattr(path: string): string {
  const bytes: Buffer[] = [];
  let last = 0;
  for (const m of path.matchAll(/\\([0-7]{3})/g)) {
    bytes.push(Buffer.from(path.slice(last, m.index), 'utf8'), Buffer.from([parseInt(m[1] ?? '0', 8)]));
    last = m.index + m[0].length;
  }
  bytes.push(Buffer.from(path.slice(last), 'utf8'));
  return Buffer.concat(bytes).toString('utf8');
}

/**
 * Finds overlayfs' whiteouts (0/0 character devices) and opaque directories in `dir`, an unpacked
 * store layer or a sandbox's upper directory. Nothing is followed.
 */
export async function findOverlayMarkers(dir: string): Promise<OverlayMarkers> {
  const whiteouts: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isCharacterDevice()) continue;
    const path = join(entry.parentPath ?? entry.path, entry.name);
    if ((await lstat(path)).rdev === 0) whiteouts.push(relative(dir, path));
  }
  const opaque: string[] = [];
  for (const [path, attrs] of await readOverlayXattrs(dir)) {
    const rel = relative(dir, path);
    if (attrs.get('trusted.overlay.opaque') === 'y' && rel !== '' && !rel.startsWith('..')) opaque.push(rel);
  }
  return { whiteouts, opaque };
}

/**
 * Archives an overlayfs layer directory (an unpacked store layer, or a sandbox's upper directory)
 * as an uncompressed OCI layer at `out`: everything as GNU tar records it (numeric owners, modes,
 * hard links, symlinks, `user.*` and `security.capability` xattrs, names sorted, so the same tree
 * gives the same digest), except overlayfs' own markers, which become OCI whiteouts — a 0/0
 * character device `<name>` an empty `.wh.<name>`, an opaque directory its `.wh..wh..opq` — and
 * the relative paths in `exclude` (files or whole directories), which are left out. The reverse of
 * `unpackLayer`'s whiteout conversion.
 */
export async function packOverlayLayer(dir: string, out: string, options: { exclude?: readonly string[] } = {}): Promise<PackedLayer> {
  const markers = await findOverlayMarkers(dir);
  const scratch = await mkdtemp(join(dirname(out), '.pack-'));
  try {
    // GNU tar reads an exclude file by lines (`--null` does not apply to it): a name with a newline
    // goes on the command line instead.
    const excludes = [...markers.whiteouts, ...(options.exclude ?? [])].map((p) => `./${p}`);
    const excludeList = join(scratch, 'exclude');
    await writeFile(excludeList, excludes.filter((p) => !p.includes('\n')).map((p) => `${p}\n`).join(''));
    await runTool('tar', [
      '--create', '--file', out, '--directory', dir,
      '--numeric-owner', '--sort=name', ...DETERMINISTIC_PAX,
      '--xattrs', '--xattrs-include=user.*', '--xattrs-include=security.capability',
      '--anchored', '--no-wildcards', '--exclude-from', excludeList,
      ...excludes.filter((p) => p.includes('\n')).map((p) => `--exclude=${p}`),
      '.',
    ], { timeoutMs: 3_600_000 });
    const nul = (paths: readonly string[]): string => paths.map((p) => `./${p}\0`).join('');
    // The markers are appended as files alone (no directory entries, which would overwrite the
    // real directories' owners and modes when the layer is unpacked).
    const tree = join(scratch, 'markers');
    const names: string[] = [];
    const excluded = (path: string): boolean => (options.exclude ?? []).some((e) => path === e || path.startsWith(`${e}/`));
    for (const whiteout of markers.whiteouts) {
      if (excluded(whiteout)) continue;
      names.push(join(dirname(whiteout), `${WHITEOUT_PREFIX}${basename(whiteout)}`));
    }
    for (const opaque of markers.opaque) if (!excluded(opaque)) names.push(join(opaque, OPAQUE_MARKER));
    if (names.length > 0) {
      for (const name of names) {
        await mkdir(join(tree, dirname(name)), { recursive: true });
        await writeFile(join(tree, name), '');
      }
      const fileList = join(scratch, 'markers.list');
      await writeFile(fileList, nul(names.sort()));
      await runTool('tar', ['--append', '--file', out, '--directory', tree, '--numeric-owner', '--owner=0', '--group=0', '--mode=0644', '--mtime=@0', ...DETERMINISTIC_PAX, '--no-recursion', '--null', '--verbatim-files-from', '--files-from', fileList], { timeoutMs: 600_000 });
    }
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(out)) hash.update(chunk as Buffer);
    return { digest: `sha256:${hash.digest('hex')}`, size: (await stat(out)).size };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { rootfsCacheDir } from './paths.js';
import { DEBIAN_SUITE, RECIPES, recipeKey } from './recipes.js';
import type { RootfsKind } from './recipes.js';
import { requireTool, runTool } from './tools.js';
import { pathExists } from '../util/path-exists.js';

/** A rootfs tarball in the cache. */
export interface BuiltRootfs {
  readonly kind: RootfsKind;
  /** Content key (kind, recipe version, inputs): also the image label value. */
  readonly key: string;
  /** The cached tarball. */
  readonly cachedPath: string;
  /** Where the caller asked for it (a copy of the cached tarball), or the cached path. */
  readonly path: string;
  /** True when the cache already held it. */
  readonly cached: boolean;
  /** Time spent, in milliseconds. */
  readonly ms: number;
}

/** Options for {@link buildRootfs}. */
export interface BuildRootfsOptions {
  /** Rebuild even when the cache holds the key. */
  readonly force?: boolean;
  /** Progress messages. */
  readonly log?: (message: string) => void;
}


/** True when the ELF file has no program interpreter, i.e. runs in an empty rootfs. */
async function isStaticElf(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const header = Buffer.alloc(64);
    await handle.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46) return false;
    if (header[4] !== 2 || header[5] !== 1) return false; // only ELF64 little-endian is checked
    const phoff = Number(header.readBigUInt64LE(0x20));
    const phentsize = header.readUInt16LE(0x36);
    const phnum = header.readUInt16LE(0x38);
    const table = Buffer.alloc(phentsize * phnum);
    await handle.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i += 1) {
      if (table.readUInt32LE(i * phentsize) === 3) return false; // PT_INTERP
    }
    return true;
  } finally {
    await handle.close();
  }
}

async function staticBusybox(): Promise<{ path: string; bytes: Buffer; applets: string[] }> {
  const path = requireTool('busybox');
  if (!(await isStaticElf(path))) {
    throw new Error(`${path} is not statically linked (Debian 'busybox' instead of 'busybox-static'?); run 'bash scripts/build-images.sh'`);
  }
  const bytes = await readFile(path);
  const { stdout } = await runTool('busybox', ['--list-full']);
  const applets = stdout
    .split('\n')
    .map((line) => line.trim().replace(/^\/+/, ''))
    .filter((line) => line !== '' && !line.includes('..'));
  return { path, bytes, applets };
}

/** Writes a busybox rootfs tar: the static binary, one symlink per applet, a minimal /etc. */
async function writeBusyboxTar(outTar: string, busybox: { bytes: Buffer; applets: string[] }): Promise<void> {
  const pack = tar.pack();
  const mtime = new Date(0);
  const owner = { uid: 0, gid: 0, uname: 'root', gname: 'root', mtime };
  const dirs = new Set<string>(['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'etc', 'tmp', 'root', 'dev', 'proc', 'sys', 'var', 'home']);
  for (const applet of busybox.applets) {
    const parts = applet.split('/');
    for (let i = 1; i < parts.length; i += 1) dirs.add(parts.slice(0, i).join('/'));
  }
  const modes: Record<string, number> = { tmp: 0o1777, root: 0o700 };
  for (const dir of [...dirs].sort()) pack.entry({ ...owner, name: `${dir}/`, type: 'directory', mode: modes[dir] ?? 0o755 });
  pack.entry({ ...owner, name: 'bin/busybox', mode: 0o755, size: busybox.bytes.length }, busybox.bytes);
  for (const applet of busybox.applets) {
    if (applet === 'bin/busybox') continue;
    pack.entry({ ...owner, name: applet, type: 'symlink', linkname: '/bin/busybox', mode: 0o777 });
  }
  const files: Record<string, string> = {
    'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    'etc/group': 'root:x:0:\nnogroup:x:65534:\n',
    'etc/hostname': 'sandbox\n',
  };
  for (const [name, content] of Object.entries(files)) pack.entry({ ...owner, name, mode: 0o644 }, content);
  pack.finalize();
  await pipeline(pack, createWriteStream(outTar));
}

/** Builds the python rootfs with mmdebstrap (Debian bookworm minbase + python3). */
async function writePythonTar(outTar: string, log: (message: string) => void): Promise<void> {
  const recipe = RECIPES.python;
  log(`mmdebstrap --variant=minbase --include=${recipe.packages.join(',')} ${DEBIAN_SUITE} (about 20-40 s)`);
  await runTool('mmdebstrap', [
    '--variant=minbase',
    '--format=tar',
    `--include=${recipe.packages.join(',')}`,
    '--aptopt=APT::Install-Recommends "false"',
    // Like python:3.11-slim, let `pip install` work without --break-system-packages.
    '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
    '--customize-hook=echo sandbox > "$1"/etc/hostname',
    DEBIAN_SUITE,
    outTar,
  ]);
}

/**
 * The content key a rootfs of this kind has on this host (for busybox it covers the host's
 * busybox-static binary, so it needs that binary). Cheap: builds nothing.
 */
export async function rootfsKey(kind: RootfsKind, busyboxBytes?: Buffer): Promise<string> {
  const recipe = RECIPES[kind];
  if (kind === 'python') return recipeKey(recipe);
  const bytes = busyboxBytes ?? (await staticBusybox()).bytes;
  return recipeKey(recipe, createHash('sha256').update(bytes).digest('hex'));
}

/**
 * Builds (or takes from the cache) a rootfs tarball of the given kind. The cache key is the kind,
 * the recipe version and its inputs; the tarball lives under `<cache>/images/rootfs/<key>.tar`.
 * When `outTar` is given the tarball is also copied there.
 */
export async function buildRootfs(kind: RootfsKind, outTar?: string, options: BuildRootfsOptions = {}): Promise<BuiltRootfs> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const busybox = kind === 'busybox' ? await staticBusybox() : undefined;
  const key = await rootfsKey(kind, busybox?.bytes);
  const dir = rootfsCacheDir();
  const cachedPath = join(dir, `${key}.tar`);
  const cached = !options.force && (await pathExists(cachedPath));
  if (!cached) {
    if (kind === 'python') requireTool('mmdebstrap');
    await mkdir(dir, { recursive: true });
    // Keep the .tar suffix: mmdebstrap picks its output format from it.
    const tmp = join(dir, `${key}.tmp-${process.pid}-${Date.now()}.tar`);
    try {
      if (busybox) await writeBusyboxTar(tmp, busybox);
      else await writePythonTar(tmp, log);
      await rename(tmp, cachedPath);
    } finally {
      await rm(tmp, { force: true, recursive: true });
    }
    log(`built ${kind} rootfs ${cachedPath}`);
  } else {
    log(`cached ${kind} rootfs ${cachedPath}`);
  }
  let path = cachedPath;
  if (outTar !== undefined && outTar !== cachedPath) {
    await mkdir(dirname(outTar), { recursive: true });
    await copyFile(cachedPath, outTar);
    path = outTar;
  }
  return { kind, key, cachedPath, path, cached, ms: Date.now() - started };
}

import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { Transform } from 'node:stream';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';

/** Name prefix of a whiteout entry in an image layer. */
export const WHITEOUT_PREFIX = '.wh.';
/** Entry marking its directory opaque (hides everything below it in lower layers). */
export const OPAQUE_MARKER = '.wh..wh..opq';

/** A whiteout entry of a layer, by its validated path components. */
export interface LayerWhiteout {
  /** Components of the directory holding the whiteout (empty for the layer root). */
  dir: string[];
  /** The name the whiteout hides, or null for the opaque marker. */
  hides: string | null;
}

/** What {@link checkLayer} found in a layer it accepted. */
export interface LayerCheckResult {
  /** Whiteouts, in archive order. */
  whiteouts: LayerWhiteout[];
  /** Decompressed bytes of the tar stream. */
  bytes: number;
  entries: number;
}

/** A layer refused before extraction: its reason is short and safe to show a user. */
export class LayerRejectedError extends Error {}

/** Entry types a layer may hold. */
const ALLOWED_TYPES = new Set(['file', 'contiguous-file', 'directory', 'symlink', 'link', 'character-device', 'block-device', 'fifo']);

/**
 * Reads a layer tarball (plain, gzip or zstd) without extracting it and refuses it unless every
 * entry stays inside the layer: no absolute names or `..` components, nothing below a path the
 * layer makes a symlink, hard links only to earlier entries, relative symlink targets that do not
 * climb above the layer root, whiteouts only as well-formed last components (`.wh.<name>` with a
 * real name, or `.wh..wh..opq`), and at most `maxBytes` decompressed bytes.
 */
export async function checkLayer(tarPath: string, maxBytes: number): Promise<LayerCheckResult> {
  const state = new LayerState();
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (bytes > maxBytes) callback(new LayerRejectedError(`layer is larger than ${maxBytes} bytes uncompressed`));
      else callback(null, chunk);
    },
  });
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    // The pipeline reports failures; an entry stream torn down with it must not throw on its own.
    stream.on('error', () => undefined);
    try {
      state.accept(header);
    } catch (error) {
      stream.resume();
      next(error as Error);
      return;
    }
    stream.on('end', () => next());
    stream.resume();
  });
  const { source, done } = await decompressed(tarPath);
  try {
    await pipeline(source, counter, extract);
    await done;
  } catch (error) {
    source.destroy();
    await done.catch(() => undefined);
    if (error instanceof LayerRejectedError) throw error;
    throw new LayerRejectedError(`layer is not a valid tar archive (${(error as Error).message})`);
  }
  return { whiteouts: state.whiteouts, bytes, entries: state.entries };
}

/** The rules, applied entry by entry. */
class LayerState {
  readonly whiteouts: LayerWhiteout[] = [];
  entries = 0;
  private readonly symlinks = new Set<string>();
  private readonly parents = new Set<string>();
  private readonly nonDirectories = new Set<string>();

  accept(header: tar.Header): void {
    this.entries++;
    const type = header.type ?? 'file';
    if (!ALLOWED_TYPES.has(type)) throw new LayerRejectedError(`layer entry ${quote(header.name)} has unsupported type ${type}`);
    const parts = entryParts(header.name);
    const path = parts.join('/');
    if (parts.length === 0) {
      if (type !== 'directory') throw new LayerRejectedError('layer root entry is not a directory');
      return;
    }
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (this.symlinks.has(prefix)) throw new LayerRejectedError(`layer entry ${quote(header.name)} lies below the symlink ${quote(prefix)}`);
      if ((parts[i - 1] ?? '').startsWith(WHITEOUT_PREFIX)) throw new LayerRejectedError(`layer entry ${quote(header.name)} lies below a whiteout`);
      this.parents.add(prefix);
    }
    const name = parts[parts.length - 1] ?? '';
    if (name.startsWith(WHITEOUT_PREFIX)) {
      this.acceptWhiteout(header.name, parts.slice(0, -1), name, type);
    }
    if (type === 'symlink') {
      if (this.parents.has(path)) throw new LayerRejectedError(`layer entry ${quote(header.name)} replaces a directory with a symlink`);
      checkSymlinkTarget(header.name, parts, header.linkname ?? '');
      this.symlinks.add(path);
    } else if (type === 'link') {
      const target = entryParts(header.linkname ?? '', true).join('/');
      if (!this.nonDirectories.has(target)) throw new LayerRejectedError(`hard link ${quote(header.name)} points outside the layer's earlier files`);
    }
    if (type !== 'directory') this.nonDirectories.add(path);
    else this.nonDirectories.delete(path);
  }

  private acceptWhiteout(raw: string, dir: string[], name: string, type: string): void {
    if (type !== 'file' && type !== 'link') throw new LayerRejectedError(`whiteout ${quote(raw)} is not a plain file`);
    if (name === OPAQUE_MARKER) {
      this.whiteouts.push({ dir, hides: null });
      return;
    }
    const hides = name.slice(WHITEOUT_PREFIX.length);
    if (hides === '' || hides === '.' || hides === '..' || hides.startsWith(WHITEOUT_PREFIX)) {
      throw new LayerRejectedError(`malformed whiteout ${quote(raw)}`);
    }
    this.whiteouts.push({ dir, hides });
  }
}

/**
 * The components of an entry (or hard link target) name: a leading `./`, empty and `.` components
 * are dropped as GNU tar drops them; absolute names and `..` components are refused.
 */
function entryParts(raw: string, isLinkTarget = false): string[] {
  const what = isLinkTarget ? 'hard link target' : 'layer entry';
  if (raw.startsWith('/')) throw new LayerRejectedError(`${what} ${quote(raw)} is an absolute path`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new LayerRejectedError(`${what} ${quote(raw)} has a .. component`);
  if (isLinkTarget && parts.length === 0) throw new LayerRejectedError(`hard link target ${quote(raw)} is empty`);
  return parts;
}

/** Refuses a relative symlink target that climbs above the layer root. Absolute targets are resolved inside the sandbox's root. */
function checkSymlinkTarget(raw: string, parts: string[], target: string): void {
  if (target === '') throw new LayerRejectedError(`symlink ${quote(raw)} has an empty target`);
  if (target.startsWith('/')) return;
  let depth = parts.length - 1;
  for (const component of target.split('/')) {
    if (component === '..') depth--;
    else if (component !== '' && component !== '.') depth++;
    if (depth < 0) throw new LayerRejectedError(`symlink ${quote(raw)} points outside the layer (${quote(target)})`);
  }
}

function quote(text: string): string {
  return JSON.stringify(text.length > 120 ? `${text.slice(0, 120)}…` : text);
}

/** The decompressed bytes of a layer file: gzip and zstd by their magic numbers, anything else as plain tar. */
async function decompressed(path: string): Promise<{ source: Readable; done: Promise<void> }> {
  const magic = Buffer.alloc(4);
  const handle = await open(path, 'r');
  try {
    await handle.read(magic, 0, 4, 0);
  } finally {
    await handle.close();
  }
  if (magic[0] === 0x1f && magic[1] === 0x8b) {
    const gunzip = createGunzip();
    const done = pipeline(createReadStream(path), gunzip).catch(() => undefined);
    return { source: gunzip, done };
  }
  if (magic.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) {
    const child = spawn('zstd', ['-dc', '--', posix.normalize(path)], { stdio: ['ignore', 'pipe', 'ignore'] });
    const done = new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => {
        if (code === 0 || signal === 'SIGTERM' || signal === 'SIGPIPE') resolve();
        else reject(new LayerRejectedError(`zstd could not decompress the layer (exit ${code ?? signal})`));
      });
    });
    child.stdout.once('close', () => undefined);
    const source = child.stdout;
    source.once('error', () => undefined);
    // Destroying the source ends zstd too.
    source.once('close', () => {
      if (child.exitCode === null) child.kill('SIGTERM');
    });
    return { source, done };
  }
  return { source: createReadStream(path), done: Promise.resolve() };
}

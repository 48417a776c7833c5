import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** A workspace archive as stored: `sha256:<hex>` of its bytes, and its size. */
export interface StoredArchive {
  digest: string;
  sizeBytes: number;
}

/** Temporary files of captures older than this are left-overs of a crash (a capture takes seconds). */
const STALE_MS = 60 * 60_000;

/**
 * Content-addressed tarballs of loop-disk workspaces, one file per distinct content
 * (`<dir>/sha256-<hex>.tar`), written with GNU tar on the host: names sorted, numeric owners, so
 * the same files with the same metadata give the same archive and are stored once. Archives are
 * written by this process from a frozen sandbox's disk and never by a sandbox, so extracting one as
 * root into a fresh, empty disk is safe (a real filesystem has no `..` members, and no file behind
 * one of its own symlinks).
 */
export class WorkspaceArchives {
  constructor(readonly dir: string) {}

  /** Host path of the archive with `digest`. */
  path(digest: string): string {
    const hex = /^sha256:([0-9a-f]{64})$/.exec(digest)?.[1];
    if (hex === undefined) throw new Error(`not a workspace archive digest: ${digest}`);
    return join(this.dir, `sha256-${hex}.tar`);
  }

  /**
   * Archives everything under `source` into a temporary file (the caller keeps the sandbox frozen
   * meanwhile); `store()` then makes it durable under its digest.
   */
  async capture(source: string): Promise<{ temp: string; digest: string; sizeBytes: number }> {
    const tmpDir = join(this.dir, 'tmp');
    await mkdir(tmpDir, { recursive: true, mode: 0o700 });
    const temp = join(tmpDir, `${Date.now()}-${randomBytes(6).toString('hex')}.tar`);
    const tar = spawn('tar', ['--format=gnu', '--sort=name', '--numeric-owner', '-C', source, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    tar.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-2000)));
    const exited = new Promise<number>((resolve, reject) => {
      tar.on('error', reject);
      tar.on('close', (code) => resolve(code ?? 1));
    });
    const hash = createHash('sha256');
    let sizeBytes = 0;
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        sizeBytes += chunk.length;
        callback(null, chunk);
      },
    });
    try {
      await pipeline(tar.stdout, hashing, createWriteStream(temp, { mode: 0o600 }));
      const code = await exited;
      if (code !== 0) throw new Error(`tar of ${source} exited with ${code}: ${stderr.trim()}`);
    } catch (error) {
      tar.kill('SIGKILL');
      await rm(temp, { force: true });
      throw error;
    }
    return { temp, digest: `sha256:${hash.digest('hex')}`, sizeBytes };
  }

  /**
   * Moves a captured archive to its content address, after syncing it to disk; drops it when that
   * content is stored already. Returns whether this call stored it.
   */
  async store(temp: string, digest: string): Promise<boolean> {
    const target = this.path(digest);
    if (await exists(target)) {
      await rm(temp, { force: true });
      return false;
    }
    const handle = await open(temp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
    const dirHandle = await open(this.dir, 'r');
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
    return true;
  }

  /** Extracts the archive with `digest` into `target` (an empty directory), owners and modes kept. */
  async extract(digest: string, target: string): Promise<void> {
    const archive = this.path(digest);
    await new Promise<void>((resolve, reject) => {
      const tar = spawn('tar', ['--numeric-owner', '-xpf', archive, '-C', target], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      tar.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-2000)));
      tar.on('error', reject);
      tar.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`extracting the workspace archive ${digest} failed (tar exit ${code}): ${stderr.trim()}`))));
    });
  }

  /** Deletes the archive with `digest`. Idempotent. */
  async remove(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
  }

  /**
   * Every stored archive's digest, with its modification time (ms), and the temporary files left by
   * captures that crashed (older than an hour), which it deletes.
   */
  async list(): Promise<Array<{ digest: string; mtimeMs: number }>> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: Array<{ digest: string; mtimeMs: number }> = [];
    for (const name of names) {
      const hex = /^sha256-([0-9a-f]{64})\.tar$/.exec(name)?.[1];
      if (hex === undefined) continue;
      const st = await stat(join(this.dir, name)).catch(() => undefined);
      if (st) out.push({ digest: `sha256:${hex}`, mtimeMs: st.mtimeMs });
    }
    const tmpDir = join(this.dir, 'tmp');
    for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
      const st = await stat(join(tmpDir, name)).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > STALE_MS) await rm(join(tmpDir, name), { force: true });
    }
    return out;
  }

  /** Whether an archive last written at `mtimeMs` is old enough that no capture can still be naming it. */
  static settled(mtimeMs: number): boolean {
    return Date.now() - mtimeMs > STALE_MS;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

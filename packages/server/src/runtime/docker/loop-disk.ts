import { execFile } from 'node:child_process';
import { mkdir, open, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Per-sandbox disks: a sparse file formatted as ext4 and loop-mounted on the host, then bind-mounted
 * into the sandbox at the workspace path. The filesystem's size is the limit: writes past it fail
 * with ENOSPC. Needs root on the Docker host, `mkfs.ext4` and `mount`/`umount` (util-linux,
 * e2fsprogs) and the same mount namespace as dockerd.
 */
export class LoopDisks {
  constructor(private readonly rootDir: string) {}

  /** Directory holding one sandbox's image file and mount point. */
  private dir(sandboxId: string): string {
    return join(this.rootDir, sandboxId);
  }

  /** The mount point for a sandbox's disk, whether or not it exists. */
  mountPoint(sandboxId: string): string {
    return join(this.dir(sandboxId), 'mnt');
  }

  /** Whether this host can make loop disks (root, mkfs.ext4, a loop device). */
  static async available(): Promise<{ ok: boolean; reason?: string }> {
    if (process.getuid?.() !== 0) return { ok: false, reason: 'not running as root' };
    try {
      await run('mkfs.ext4', ['-V']);
    } catch {
      return { ok: false, reason: 'mkfs.ext4 not found (install e2fsprogs)' };
    }
    try {
      await stat('/dev/loop-control');
    } catch {
      return { ok: false, reason: '/dev/loop-control missing (no loop device support)' };
    }
    return { ok: true };
  }

  /** Creates, formats and mounts a disk of `sizeBytes`; returns the mount point. */
  async create(sandboxId: string, sizeBytes: number): Promise<string> {
    const dir = this.dir(sandboxId);
    const image = join(dir, 'disk.img');
    const mnt = this.mountPoint(sandboxId);
    await mkdir(mnt, { recursive: true });
    const handle = await open(image, 'w');
    try {
      await handle.truncate(sizeBytes);
    } finally {
      await handle.close();
    }
    // -m 0: no blocks reserved for root (sandboxes run as root); lazy init keeps mkfs ~15 ms.
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', image]);
    await run('mount', ['-o', 'loop,nosuid,nodev', image, mnt]);
    await rm(join(mnt, 'lost+found'), { recursive: true, force: true });
    return mnt;
  }

  /** Unmounts (the loop device auto-detaches) and deletes a sandbox's disk; throws when something of it could not be deleted. Idempotent. */
  async remove(sandboxId: string): Promise<void> {
    const dir = this.dir(sandboxId);
    const mnt = this.mountPoint(sandboxId);
    for (let attempt = 0; attempt < 20; attempt++) {
      if (!(await isMountPoint(mnt))) break;
      try {
        await run('umount', [mnt]);
      } catch {
        // Busy for a moment while the container's mount namespace goes away.
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (await isMountPoint(mnt)) {
      // Last resort: detach lazily so the directory can go; the kernel frees it when unused.
      await run('umount', ['-l', mnt]).catch(() => undefined);
    }
    await rm(join(dir, 'disk.img'), { force: true });
    await rmdir(mnt).catch(() => undefined);
    // A directory that cannot go fails the removal (the caller keeps the sandbox listed and retries).
    await rm(dir, { recursive: true, force: true });
  }
}

/** Whether `path` is a mount point (its device differs from its parent's). */
async function isMountPoint(path: string): Promise<boolean> {
  try {
    const [self, parent] = await Promise.all([stat(path), stat(join(path, '..'))]);
    return self.dev !== parent.dev;
  } catch {
    return false;
  }
}

import { mkdir, open, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool } from '../run-tool.js';

/** Past this share of its disk in use after a build, an owner's build disk starts empty next time. */
export const BUILD_DISK_RESET_SHARE = 0.5;

/**
 * One owner's build disk: a sparse file of the build disk limit formatted as ext4, loop-mounted
 * `nodev,nosuid` for the length of a build. It
 * holds buildah's storage (base images and the layer cache kept between the owner's builds), the
 * build context and the result before it is imported, so what one build can write is bounded by
 * its size. Deleted blocks go back to the host (`discard`). Layout: `<dir>/disk.img`, plus the
 * owner's build metadata that describes what the disk holds (see {@link metadataDir}), which goes
 * with it.
 */
export class BuildDisk {
  constructor(
    /** The owner's directory on the host (0700 parents are fine: only host root mounts it). */
    readonly dir: string,
    /** The disk's size: the build disk limit. */
    readonly sizeBytes: number,
  ) {}

  /** Where facts about the disk's content live (the known-layer map, base markers): reset with the disk. */
  get metadataDir(): string {
    return join(this.dir, 'meta');
  }

  private get image(): string {
    return join(this.dir, 'disk.img');
  }

  /**
   * Mounts the disk at `target` (an existing directory), making it first when missing or of another
   * size. A mount an earlier process left (it died during a build) is taken down first: the file
   * system is never mounted twice.
   */
  async mount(target: string): Promise<void> {
    await this.detachLeftovers();
    const current = await stat(this.image).catch(() => undefined);
    if (current?.size !== this.sizeBytes) await this.make();
    const mountAt = (): Promise<unknown> => runTool('mount', ['-t', 'ext4', '-o', 'loop,nodev,nosuid,discard', this.image, target], { timeoutMs: 60_000 });
    try {
      await mountAt();
    } catch (error) {
      // A file system that does not mount (a host crash during a build) is made again: it held only a cache.
      await this.make();
      await mountAt().catch((again: unknown) => {
        throw new Error(`the build disk does not mount: ${(again as Error).message} (first: ${(error as Error).message})`);
      });
    }
  }

  /** Share of the mounted disk's blocks in use (0–1). */
  static async usedShare(target: string): Promise<number> {
    const s = await statfs(target);
    return s.blocks === 0 ? 0 : (s.blocks - s.bfree) / s.blocks;
  }

  /**
   * Unmounts the disk from `target` (lazily when something still holds it). With `reset`, or when
   * more than {@link BUILD_DISK_RESET_SHARE} of it was in use, the disk and its metadata are
   * deleted: the owner's next build starts with an empty cache.
   */
  async unmount(target: string, reset = false): Promise<void> {
    const full = reset || (await BuildDisk.usedShare(target).catch(() => 1)) > BUILD_DISK_RESET_SHARE;
    await runTool('umount', [target], { timeoutMs: 60_000 }).catch(() => runTool('umount', ['--lazy', target], { timeoutMs: 60_000 }).catch(() => undefined));
    if (full) await rm(this.dir, { recursive: true, force: true });
  }

  /** Unmounts and detaches every loop device still backed by the disk's file. */
  private async detachLeftovers(): Promise<void> {
    const attached = await runTool('losetup', ['--noheadings', '--output', 'NAME', '--associated', this.image], { timeoutMs: 30_000 }).catch(() => ({ stdout: '' }));
    for (const device of attached.stdout.split('\n').map((line) => line.trim()).filter(Boolean)) {
      const targets = await runTool('findmnt', ['--noheadings', '--output', 'TARGET', '--source', device], { timeoutMs: 30_000 }).catch(() => ({ stdout: '' }));
      for (const mountPoint of targets.stdout.split('\n').map((line) => line.trim()).filter(Boolean)) {
        await runTool('umount', ['--lazy', mountPoint], { timeoutMs: 30_000 }).catch(() => undefined);
      }
      await runTool('losetup', ['--detach', device], { timeoutMs: 30_000 }).catch(() => undefined);
    }
  }

  private async make(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
    await mkdir(this.metadataDir, { recursive: true, mode: 0o700 });
    const file = await open(this.image, 'w', 0o600);
    await file.truncate(this.sizeBytes);
    await file.close();
    await runTool('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', this.image], { timeoutMs: 120_000 });
  }
}

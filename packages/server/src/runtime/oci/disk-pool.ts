import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool } from '../run-tool.js';

/** A formatted, mounted ext4 image: a sandbox's writable layer lives on it. */
export interface Disk {
  id: string;
  sizeBytes: number;
  /** Mount point of the filesystem. */
  mountPoint: string;
}

/**
 * Per-sandbox disks: a sparse file of the requested size formatted as ext4 (`-m 0`, lazy inode
 * table and journal init) and loop-mounted `nosuid,nodev`. The filesystem size is the limit on what
 * a sandbox can write. Formatting and mounting cost ~20–40 ms together, so a few disks of each
 * recently used size are kept ready (`poolSize` per size, refilled in the background).
 * Layout: `<root>/<id>/disk.img`, `<root>/<id>/mnt`, `<root>/<id>/owner` (the sandbox using it).
 */
export class DiskPool {
  private readonly ready = new Map<number, Disk[]>();
  private readonly filling = new Map<number, Promise<void>>();
  private closed = false;
  /** Apparent size of every disk this pool made or found (ready, owned or orphaned), by id. */
  private readonly sizes = new Map<string, number>();
  /** Bytes of disks being made right now. */
  private makingBytes = 0;
  private usedCache: { at: number; bytes: Promise<number> } | undefined;
  /** While this says true (creates in flight), refilling waits: it would only compete with them for the CPU. */
  busy: () => boolean = () => false;

  constructor(
    private readonly root: string,
    private readonly poolSize = 2,
    private readonly maxSizes = 4,
  ) {}

  /** A disk of exactly `sizeBytes`, from the pool when one is ready; marked as owned by `owner`. */
  async acquire(sizeBytes: number, owner: string): Promise<Disk> {
    const list = this.ready.get(sizeBytes);
    const disk = list?.shift() ?? (await this.make(sizeBytes));
    await writeFile(join(this.root, disk.id, 'owner'), owner);
    this.refill(sizeBytes);
    return disk;
  }

  /** Starts keeping `poolSize` disks of this size ready. */
  warm(sizeBytes: number): Promise<void> {
    this.refill(sizeBytes);
    return this.filling.get(sizeBytes) ?? Promise.resolve();
  }

  private refill(sizeBytes: number): void {
    if (this.closed || this.poolSize <= 0 || this.filling.has(sizeBytes)) return;
    if (!this.ready.has(sizeBytes)) {
      if (this.ready.size >= this.maxSizes) {
        // Forget the least recently added size; its ready disks are destroyed.
        const [oldest] = this.ready.keys();
        if (oldest !== undefined) {
          const stale = this.ready.get(oldest) ?? [];
          this.ready.delete(oldest);
          for (const d of stale) void this.destroy(d.id).catch(() => undefined);
        }
      }
      this.ready.set(sizeBytes, []);
    }
    const job = (async () => {
      const list = this.ready.get(sizeBytes);
      while (!this.closed && list && list.length < this.poolSize && this.ready.get(sizeBytes) === list) {
        if (this.busy()) await new Promise((r) => setTimeout(r, 20));
        else list.push(await this.make(sizeBytes, true));
      }
    })()
      .catch(() => undefined)
      .finally(() => this.filling.delete(sizeBytes));
    this.filling.set(sizeBytes, job);
  }

  /** Formats and mounts a new disk; `background`: at a lower CPU priority (a refill, not a create waiting). */
  private async make(sizeBytes: number, background = false): Promise<Disk> {
    const id = randomBytes(6).toString('hex');
    const dir = join(this.root, id);
    const mountPoint = join(dir, 'mnt');
    const image = join(dir, 'disk.img');
    this.makingBytes += sizeBytes;
    try {
      await mkdir(mountPoint, { recursive: true });
      const handle = await open(image, 'w');
      try {
        await handle.truncate(sizeBytes);
      } finally {
        await handle.close();
      }
      await runTool('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', image], { background });
      await runTool('mount', ['-o', 'loop,nosuid,nodev', image, mountPoint], { background });
      await rm(join(mountPoint, 'lost+found'), { recursive: true, force: true });
      this.sizes.set(id, sizeBytes);
    } catch (error) {
      await this.destroy(id).catch(() => undefined);
      throw error;
    } finally {
      this.makingBytes -= sizeBytes;
    }
    return { id, sizeBytes, mountPoint };
  }

  /** Unmounts (the loop device detaches with it) and deletes a disk. Idempotent. */
  async destroy(id: string): Promise<void> {
    const dir = join(this.root, id);
    const mnt = join(dir, 'mnt');
    for (let attempt = 0; attempt < 20 && (await isMountPoint(mnt)); attempt++) {
      try {
        await runTool('umount', [mnt], { background: true });
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    if (await isMountPoint(mnt)) await runTool('umount', ['-l', mnt]).catch(() => undefined);
    if (await isMountPoint(mnt)) throw new Error(`disk ${id} is still mounted at ${mnt}`);
    await rm(dir, { recursive: true, force: true });
    this.sizes.delete(id);
    this.usedCache = undefined;
  }

  /** Sum of the sizes of the disks that exist or are being made (sparse: most of it is not on the host's disk yet). */
  allocatedBytes(): number {
    let total = this.makingBytes;
    for (const size of this.sizes.values()) total += size;
    return total;
  }

  /** Bytes the disks take on the host's filesystem; measured at most once a second. */
  usedBytes(): Promise<number> {
    if (!this.usedCache || Date.now() - this.usedCache.at > 1000) {
      const ids = [...this.sizes.keys()];
      const bytes = Promise.all(ids.map((id) => stat(join(this.root, id, 'disk.img')).then((st) => st.blocks * 512, () => 0))).then((all) =>
        all.reduce((sum, n) => sum + n, 0),
      );
      this.usedCache = { at: Date.now(), bytes };
    }
    return this.usedCache.bytes;
  }

  /** Every disk directory with its owner (undefined for pooled or orphaned disks); counts their sizes in {@link allocatedBytes}. */
  async scan(): Promise<{ id: string; owner: string | undefined }[]> {
    const out: { id: string; owner: string | undefined }[] = [];
    for (const id of await readdir(this.root).catch(() => [] as string[])) {
      const owner = await readFile(join(this.root, id, 'owner'), 'utf8').catch(() => undefined);
      const size = await stat(join(this.root, id, 'disk.img')).then((st) => st.size, () => undefined);
      if (size !== undefined && !this.sizes.has(id)) this.sizes.set(id, size);
      out.push({ id, owner });
    }
    return out;
  }

  /** Whether the pool holds this disk as ready (not owned). */
  isPooled(id: string): boolean {
    for (const list of this.ready.values()) if (list.some((d) => d.id === id)) return true;
    return false;
  }

  /** Stops refilling and destroys every ready disk. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.filling.values()]);
    const all = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.all(all.map((d) => this.destroy(d.id).catch(() => undefined)));
  }
}

/** Whether `path` is a mount point (its device differs from its parent's). */
export async function isMountPoint(path: string): Promise<boolean> {
  try {
    const [self, parent] = await Promise.all([stat(path), stat(join(path, '..'))]);
    return self.dev !== parent.dev || self.ino === parent.ino;
  } catch {
    return false;
  }
}

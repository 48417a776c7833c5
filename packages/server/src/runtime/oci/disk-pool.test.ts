import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DiskPool, isMountPoint } from './disk-pool.js';

const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const MiB = 1024 * 1024;

describe('disk pool', { skip: process.getuid?.() !== 0 ? 'needs root (mkfs, loop mounts)' : undefined }, () => {
  const roots: string[] = [];
  const pools: DiskPool[] = [];
  after(async () => {
    for (const pool of pools) {
      await pool.close();
      for (const d of await pool.scan()) await pool.destroy(d.id);
    }
    for (const root of roots) await rm(root, { recursive: true, force: true });
  });

  it('keeps disks ready, refills only while nothing is busy, and destroys what it holds on close', async () => {
    const root = await mkdtemp(join(CACHE, 'disk-pool-'));
    roots.push(root);
    const pool = new DiskPool(root, 2);
    pools.push(pool);
    let busy = true;
    pool.busy = () => busy;
    void pool.warm(64 * MiB);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual((await pool.scan()).length, 0, 'nothing is made while creates are in flight');
    busy = false;
    await pool.warm(64 * MiB);
    const ready = await pool.scan();
    assert.equal(ready.length, 2);
    busy = true; // a create is in flight: the refill this acquire starts waits
    const disk = await pool.acquire(64 * MiB, 'sandbox-a');
    assert.ok(await isMountPoint(disk.mountPoint));
    assert.ok(ready.some((d) => d.id === disk.id), 'the disk came from the pool');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await pool.scan()).length, 2, 'one ready, one owned; no refill yet');
    busy = false;
    for (let i = 0; i < 100 && (await pool.scan()).length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal((await pool.scan()).length, 3);
    await pool.close();
    const left = await pool.scan();
    assert.deepEqual(left.map((d) => d.owner), ['sandbox-a'], 'close() destroyed the pooled disks, not the owned one');
    await pool.destroy(disk.id);
    assert.equal(existsSync(join(root, disk.id)), false);
  });
});

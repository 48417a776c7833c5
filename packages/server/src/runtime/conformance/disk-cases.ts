import assert from 'node:assert/strict';
import { it } from 'node:test';
import { RuntimeError } from '../runtime.js';
import { makeSpec } from './conformance-suite.js';
import type { ConformanceContext } from './conformance-suite.js';

const GiB = 1024 ** 3;

/** Disk admission: a driver reports the space its sandbox disks draw on and never makes a disk that cannot fit in it. */
export function registerDiskCases(context: ConformanceContext): void {
  it('disk capacity: reports the free and total space of the filesystem sandbox disks live on', async () => {
    const capacity = await context.runtime.diskCapacity();
    assert.ok(capacity, 'the driver reports its disk capacity');
    assert.ok(capacity.freeBytes > 0 && capacity.freeBytes <= capacity.totalBytes, JSON.stringify(capacity));
    assert.ok(capacity.allocatedBytes >= 0 && capacity.usedBytes >= 0, JSON.stringify(capacity));
  });

  it('disk admission: a create whose disk is larger than the free space is refused and leaves nothing behind', async () => {
    const capacity = await context.runtime.diskCapacity();
    assert.ok(capacity);
    // Sparse disks make any size cheap to create; the driver must check the size against free space.
    const spec = makeSpec(context.image, { diskBytes: capacity.freeBytes + 64 * GiB });
    await assert.rejects(context.runtime.create(spec), (error: unknown) => {
      assert.ok(error instanceof RuntimeError, String(error));
      assert.equal(error.kind, 'START_FAILED');
      assert.match(error.message, /disk space/);
      return true;
    });
    const listed = await context.runtime.list();
    assert.equal(listed.filter((s) => s.sandboxId === spec.sandboxId).length, 0);
  });
}

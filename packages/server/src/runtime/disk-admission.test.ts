import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { startTestServer } from '../testing/test-server.js';
import { dockerMissing, needNothingMissing } from '../testing/runtime-available.js';
import { diskShortfall } from './disk-admission.js';

const GiB = 1024 ** 3;

describe('disk admission rule', () => {
  const capacity = { freeBytes: 100 * GiB, totalBytes: 200 * GiB, allocatedBytes: 0, usedBytes: 0 };

  it('admits a disk that fits in free space minus the reserve, and refuses one that does not', () => {
    assert.equal(diskShortfall(capacity, 90 * GiB, { reserveBytes: 10 * GiB, overcommit: 0 }), null);
    assert.match(diskShortfall(capacity, 91 * GiB, { reserveBytes: 10 * GiB, overcommit: 0 }) ?? '', /does not fit/);
  });

  it('holds back free space for the growth of existing disks, divided by the overcommit factor', () => {
    // 1,000 disks of 10 GiB with 1 GiB written in all: 9,999 GiB could still be written.
    const busy = { ...capacity, allocatedBytes: 10_000 * GiB, usedBytes: 1 * GiB };
    assert.equal(diskShortfall(busy, 10 * GiB, { reserveBytes: 5 * GiB, overcommit: 200 }), null);
    assert.match(diskShortfall(busy, 10 * GiB, { reserveBytes: 5 * GiB, overcommit: 100 }) ?? '', /growth of existing disks/);
    assert.match(diskShortfall({ ...capacity, allocatedBytes: 95 * GiB }, 10 * GiB, { reserveBytes: 0, overcommit: 1 }) ?? '', /growth/);
    assert.equal(diskShortfall(busy, 10 * GiB, { reserveBytes: 5 * GiB, overcommit: 0 }), null);
  });
});

describe('disk admission at the API', () => {
  const missing = dockerMissing();
  it('answers 422 naming disk_size_gb when the disk does not fit in the host\'s free space', async (t0) => {
    if (!needNothingMissing(t0, missing)) return;
    const t = await startTestServer({ runtime: 'docker', instanceId: `disk-${randomBytes(4).toString('hex')}` });
    try {
      const capacity = await t.server.runtime?.diskCapacity();
      assert.ok(capacity, 'the docker driver reports its capacity');
      const tooBig = Math.ceil(capacity.freeBytes / GiB) + 1;
      assert.ok(tooBig <= 1000, 'the host has less than 1000 GiB free, so the API accepts a size past it');
      const res = await t.request('POST', '/api/v1/sandbox', { body: { name: 'big', docker_image: 'busybox', disk_size_gb: tooBig } });
      assert.equal(res.statusCode, 422, res.body);
      const body = res.json<{ code: string; errors: Array<{ param: string; details: string }> }>();
      assert.equal(body.code, 'UNSUPPORTED_RESOURCE');
      assert.equal(body.errors[0]?.param, 'disk_size_gb');
      assert.match(body.errors[0]?.details ?? '', /does not fit/);
      const listed = await t.request('GET', '/api/v1/sandbox');
      assert.equal(listed.json<{ total: number }>().total, 0, 'nothing was stored');
    } finally {
      await t.close();
    }
  });

  it('keeps the configured reserve free', async (t0) => {
    if (!needNothingMissing(t0, missing)) return;
    const t = await startTestServer({ runtime: 'docker', instanceId: `disk-${randomBytes(4).toString('hex')}`, diskReserveGb: 1_000_000 });
    try {
      const res = await t.request('POST', '/api/v1/sandbox', { body: { name: 'small', docker_image: 'busybox', disk_size_gb: 1 } });
      assert.equal(res.statusCode, 422, res.body);
      assert.match(res.json<{ errors: Array<{ details: string }> }>().errors[0]?.details ?? '', /kept in reserve/);
    } finally {
      await t.close();
    }
  });
});

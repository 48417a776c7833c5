import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { availableParallelism, totalmem } from 'node:os';
import { describe, it } from 'node:test';
import { startTestServer } from '../testing/test-server.js';
import { dockerMissing, needNothingMissing, ociMissing } from '../testing/runtime-available.js';
import { capacityReserveOf, hostCapacity } from './host-capacity.js';

const GiB = 1024 ** 3;

describe('host capacity', () => {
  it('is the host minus the reserve, never below a usable floor', () => {
    const reserve = capacityReserveOf({ reserveCpu: 0.5, reserveMemoryGb: 1 });
    assert.deepEqual(hostCapacity(reserve, { cpuCores: 2, memoryBytes: 24 * GiB }), { cpuCores: 1.5, memoryBytes: 23 * GiB });
    assert.deepEqual(hostCapacity(capacityReserveOf({ reserveCpu: 8, reserveMemoryGb: 64 }), { cpuCores: 2, memoryBytes: 24 * GiB }), {
      cpuCores: 0.1,
      memoryBytes: 256 * 1024 ** 2,
    });
  });

  const missing = ociMissing();
  it('the oci driver reports the host\'s cores and memory minus CORRAL_RESERVE_*, and the API refuses a create past capacity × overcommit', async (t0) => {
    if (!needNothingMissing(t0, missing)) return;
    const t = await startTestServer({ runtime: 'oci', instanceId: `cap-${randomBytes(4).toString('hex')}`, reserveCpu: 0.5, reserveMemoryGb: 1, overcommitCpu: 1 });
    try {
      const capacity = await t.server.runtime?.capacity?.();
      assert.ok(capacity, 'the oci driver reports its capacity');
      assert.equal(capacity.cpuCores, Math.max(0.1, availableParallelism() - 0.5));
      assert.equal(capacity.memoryBytes, Math.max(256 * 1024 ** 2, totalmem() - GiB));
      if (capacity.cpuCores < 16) {
        const res = await t.request('POST', '/api/v1/sandbox', { body: { name: 'big', docker_image: 'busybox', cpu_cores: 16 } });
        assert.equal(res.statusCode, 422, res.body);
        assert.equal(res.json<{ errors: Array<{ param: string }> }>().errors[0]?.param, 'cpu_cores');
      }
    } finally {
      await t.close();
    }
  });

  const noDocker = dockerMissing();
  it('the docker driver reports the engine host\'s cores and memory minus CORRAL_RESERVE_*', async (t0) => {
    if (!needNothingMissing(t0, noDocker)) return;
    const t = await startTestServer({ runtime: 'docker', instanceId: `cap-${randomBytes(4).toString('hex')}`, reserveCpu: 0.5, reserveMemoryGb: 1 });
    try {
      const capacity = await t.server.runtime?.capacity?.();
      assert.ok(capacity, 'the docker driver reports its capacity');
      // The engine runs on this host in the test setup.
      assert.equal(capacity.cpuCores, Math.max(0.1, availableParallelism() - 0.5));
      assert.ok(Math.abs(capacity.memoryBytes - (totalmem() - GiB)) < 64 * 1024 ** 2, `${capacity.memoryBytes} vs ${totalmem() - GiB}`);
    } finally {
      await t.close();
    }
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openStore } from '../store/open-store.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import { eventually } from '../testing/runtime-available.js';
import { sandboxFixture } from '../testing/sandbox-fixture.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';
import { ACTIVE_STATUSES } from '../records/sandbox-records.js';
import { SandboxLifecycle } from './sandbox-lifecycle.js';

const GiB = 1024 ** 3;

describe('admission queue', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(async () => t.close());

  it('re-reads the reservations while creates wait, so a sandbox another replica ended frees its share', async () => {
    const instanceId = `admit-${randomBytes(4).toString('hex')}`;
    const runtime = new GatedRuntime();
    runtime.reportedCapacity = { cpuCores: 1, memoryBytes: 64 * GiB };
    runtime.openAll();
    const store = t.server.store;
    const lifecycle = new SandboxLifecycle(store, runtime, { ...t.server.config, instanceId, overcommitCpu: 1, overcommitMemory: 1 }, t.server.log, { admissionResyncMs: 100 });
    // A second connection to the same database: its updates are not notified to this process's store.
    const replica = await openStore({ kind: 'sqlite', path: join(t.dataDir, 'corral.db') });
    try {
      const user = await t.createUser('replicated');
      const row = (id: string, createdAt: string) => sandboxFixture({ id, userId: user.id, cpuCores: 1, memoryGb: 1, runtimeOwner: instanceId, createdAt, updatedAt: createdAt });
      const first = (await store.insertSandbox(row(`a${randomBytes(6).toString('hex')}`, new Date().toISOString()))).sandbox;
      lifecycle.provision(first);
      await eventually(async () => ((await store.getSandbox(first.id))?.status === 'RUNNING' ? true : undefined), 5_000, 'the first sandbox to run');
      const second = (await store.insertSandbox(row(`b${randomBytes(6).toString('hex')}`, new Date().toISOString()))).sandbox;
      lifecycle.provision(second);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(runtime.created, [first.id]);
      assert.match(lifecycle.admissionReason(second.id) ?? '', /^waiting for capacity: 0\.0 of 1\.0 CPU free/);
      await replica.updateSandbox(first.id, { status: 'TERMINATED', terminationReason: 'deleted' }, ACTIVE_STATUSES);
      await eventually(() => (runtime.created.includes(second.id) ? true : undefined), 5_000, 'the second sandbox to be admitted');
    } finally {
      await lifecycle.close();
      await replica.close();
    }
  });
});

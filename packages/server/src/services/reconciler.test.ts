import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SandboxRuntime } from '../runtime/runtime.js';
import type { SandboxRecord } from '../records/sandbox-records.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

describe('reconciler timeouts', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(async () => t.close());

  /** Creates a sandbox through the API and marks it RUNNING as of `startedMinutesAgo`. */
  async function running(body: Record<string, unknown>, startedMinutesAgo: number, activeMinutesAgo?: number): Promise<SandboxRecord> {
    const id = (await t.request('POST', '/api/v1/sandbox', { body: { name: 'r', docker_image: 'busybox', ...body } })).json<{ id: string }>().id;
    const started = new Date(Date.now() - startedMinutesAgo * 60_000).toISOString();
    const active = activeMinutesAgo === undefined ? started : new Date(Date.now() - activeMinutesAgo * 60_000).toISOString();
    const row = await t.server.store.updateSandbox(id, { status: 'RUNNING', startedAt: started, lastActivityAt: active });
    assert.ok(row);
    return row;
  }

  it('ends a sandbox past startedAt + timeout_minutes with TIMEOUT, and leaves younger ones', async () => {
    const old = await running({ timeout_minutes: 5 }, 6);
    const young = await running({ timeout_minutes: 5 }, 4);
    const unlimited = await running({ timeout_minutes: -1 }, 10_000);
    const report = await t.server.reconciler.reconcile();
    assert.ok(report.timedOut.includes(old.id));
    assert.ok(!report.timedOut.includes(young.id));
    const ended = (await t.request('GET', `/api/v1/sandbox/${old.id}`)).json<SandboxRecord & { terminationReason: string }>();
    assert.equal(ended.status, 'TIMEOUT');
    assert.equal(ended.errorType, 'TIMEOUT');
    assert.equal(ended.terminationReason, 'timeout');
    assert.equal((await t.server.store.getSandbox(young.id))?.status, 'RUNNING');
    assert.equal((await t.server.store.getSandbox(unlimited.id))?.status, 'RUNNING');
  });

  it('ends an idle sandbox, measuring from the last gateway activity', async () => {
    const idle = await running({ timeout_minutes: 600, idle_timeout_minutes: 3 }, 30, 4);
    const busy = await running({ timeout_minutes: 600, idle_timeout_minutes: 3 }, 30, 1);
    const report = await t.server.reconciler.reconcile();
    assert.deepEqual(report.idled.filter((id) => id === idle.id || id === busy.id), [idle.id]);
    const ended = await t.server.store.getSandbox(idle.id);
    assert.equal(ended?.status, 'TIMEOUT');
    assert.equal(ended?.terminationReason, 'idle_timeout');
    assert.equal((await t.server.store.getSandbox(busy.id))?.status, 'RUNNING');
  });

  it('does not count status reads as activity', async () => {
    const s = await running({ timeout_minutes: 600, idle_timeout_minutes: 2 }, 10, 3);
    for (let i = 0; i < 3; i += 1) await t.request('GET', `/api/v1/sandbox/${s.id}`);
    await t.request('POST', '/api/v1/sandbox/status:batchGet', { body: { sandbox_ids: [s.id] } });
    await t.server.reconciler.reconcile();
    assert.equal((await t.server.store.getSandbox(s.id))?.status, 'TIMEOUT');
  });

  it('purges ended sandboxes once they pass the retention period', async () => {
    const old = await running({}, 1);
    const recent = await running({}, 1);
    await t.server.store.updateSandbox(old.id, { status: 'TERMINATED', terminatedAt: new Date(Date.now() - 169 * 3_600_000).toISOString() });
    await t.server.store.updateSandbox(recent.id, { status: 'TERMINATED', terminatedAt: new Date(Date.now() - 3_600_000).toISOString() });
    const report = await t.server.reconciler.reconcile();
    assert.ok(report.purged >= 1);
    assert.equal((await t.request('GET', `/api/v1/sandbox/${old.id}`)).statusCode, 404);
    assert.equal((await t.request('GET', `/api/v1/sandbox/${recent.id}`)).statusCode, 200);
  });

  it('leaves sandboxes owned by another server instance alone', async () => {
    const foreign = await running({ timeout_minutes: 1 }, 5);
    await t.server.store.updateSandbox(foreign.id, { runtimeOwner: 'another-replica' });
    const report = await t.server.reconciler.reconcile();
    assert.ok(!report.timedOut.includes(foreign.id));
    assert.equal((await t.server.store.getSandbox(foreign.id))?.status, 'RUNNING');
  });

  it('keeps enforcing after a restart', async () => {
    const dataDir = t.dataDir;
    const s = await running({ timeout_minutes: 1 }, 0);
    await t.server.close();
    await t.server.store.close().catch(() => undefined);
    // Time passes while the server is down.
    const restarted = await startTestServer({ dataDir, bootstrapApiKey: t.adminKey });
    try {
      await restarted.server.store.updateSandbox(s.id, { startedAt: new Date(Date.now() - 2 * 60_000).toISOString() });
      await restarted.server.reconciler.reconcile();
      assert.equal((await restarted.server.store.getSandbox(s.id))?.status, 'TIMEOUT');
    } finally {
      await restarted.close();
    }
    t = await startTestServer({ dataDir, bootstrapApiKey: t.adminKey });
  });
});

describe('reconciler and sandboxes created during a pass', () => {
  it('does not take a container whose row appeared after the pass read the store for an orphan', async () => {
    const t = await startTestServer();
    try {
      const created: string[] = [];
      const removed: string[] = [];
      // A runtime whose listing shows a container for a sandbox the store did not have when the pass began.
      const runtime = {
        name: 'race',
        list: async () => {
          const id = (await t.request('POST', '/api/v1/sandbox', { body: { name: 'late', docker_image: 'busybox' } })).json<{ id: string }>().id;
          created.push(id);
          await t.server.store.updateSandbox(id, { status: 'RUNNING', startedAt: new Date().toISOString(), runtimeId: `c-${id}` });
          return [{ sandboxId: id, runtimeId: `c-${id}`, running: true, exitCode: null, oomKilled: false }];
        },
        remove: async (runtimeId: string) => {
          removed.push(runtimeId);
        },
        onEvent: () => () => undefined,
      };
      const { Reconciler } = await import('./reconciler.js');
      const { SandboxLifecycle } = await import('./sandbox-lifecycle.js');
      const lifecycle = new SandboxLifecycle(t.server.store, runtime as unknown as SandboxRuntime, t.server.config, t.server.log);
      const reconciler = new Reconciler(t.server.store, lifecycle, 60_000, t.server.log);
      const report = await reconciler.reconcile();
      assert.deepEqual(report.orphansRemoved, []);
      assert.deepEqual(removed, []);
      assert.equal((await t.server.store.getSandbox(created[0] ?? ''))?.status, 'RUNNING');
    } finally {
      await t.close();
    }
  });
});

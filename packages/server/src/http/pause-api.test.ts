import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { CorralConfig } from '../config.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import { PausableRuntime } from '../testing/pausable-runtime.js';
import { eventually } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

interface Sandbox {
  id: string;
  status: string;
}
interface ErrorBody {
  code: string;
  detail: string;
}

async function server(runtime: GatedRuntime, overrides: Partial<CorralConfig> = {}): Promise<TestServer> {
  return startTestServer({ instanceId: `pause-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 600_000, createWaitMs: 2_000, ...overrides }, {}, { runtime });
}

async function createRunning(t: TestServer, body: Record<string, unknown> = {}, key?: string): Promise<Sandbox> {
  const response = await t.request('POST', '/api/v1/sandbox', { body: { name: 'p', docker_image: 'busybox:latest', ...body }, ...(key ? { key } : {}) });
  assert.equal(response.statusCode, 201, response.body);
  const { id } = response.json<Sandbox>();
  return eventually(async () => {
    const s = (await t.request('GET', `/api/v1/sandbox/${id}`, key ? { key } : {})).json<Sandbox>();
    return s.status === 'RUNNING' ? s : undefined;
  }, 30_000, `sandbox ${id} RUNNING`);
}

async function act(t: TestServer, id: string, verb: 'pause' | 'resume', key?: string): Promise<{ status: number; body: Sandbox & ErrorBody }> {
  const response = await t.request('POST', `/api/v1/sandbox/${id}/${verb}`, key ? { key } : {});
  return { status: response.statusCode, body: response.json<Sandbox & ErrorBody>() };
}

describe('pause and resume API', () => {
  it('pauses and resumes through the driver, idempotently; the status shows PAUSED; delete of a paused sandbox removes it', async () => {
    const runtime = new PausableRuntime();
    runtime.openAll();
    const t = await server(runtime);
    try {
      const s = await createRunning(t);
      const runtimeId = `gated-${s.id}`;
      let r = await act(t, s.id, 'pause');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.status, 'PAUSED');
      assert.ok(runtime.frozen.has(runtimeId));
      r = await act(t, s.id, 'pause');
      assert.equal(r.status, 200);
      assert.equal(r.body.status, 'PAUSED');
      assert.deepEqual(runtime.calls, [`pause ${runtimeId}`], 'a second pause asks the driver nothing');
      assert.equal((await t.request('GET', `/api/v1/sandbox/${s.id}`)).json<Sandbox>().status, 'PAUSED');
      const batch = await t.request('POST', '/api/v1/sandbox/status:batchGet', { body: { sandbox_ids: [s.id] } });
      assert.equal(batch.json<{ statuses: Array<{ status: string }> }>().statuses[0]?.status, 'PAUSED');
      // The data plane refuses at once with the 409 Prime's SDK knows (it then reads error-context: PAUSED).
      const auth = (await t.request('POST', `/api/v1/sandbox/${s.id}/auth`)).json<{ token: string; user_ns: string; job_id: string }>();
      const exec = await t.server.app.inject({
        method: 'POST',
        url: `/gateway/${auth.user_ns}/${auth.job_id}/exec`,
        headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' },
        payload: '{"command":"true"}',
      });
      assert.equal(exec.statusCode, 409, exec.body);
      assert.equal(exec.json<{ error: string }>().error, 'sandbox_not_ready');
      assert.equal((await t.request('GET', `/api/v1/sandbox/${s.id}/error-context`)).json<{ status: string }>().status, 'PAUSED');

      r = await act(t, s.id, 'resume');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.status, 'RUNNING');
      assert.ok(!runtime.frozen.has(runtimeId));
      r = await act(t, s.id, 'resume');
      assert.equal(r.status, 200);
      assert.equal(r.body.status, 'RUNNING');
      assert.deepEqual(runtime.calls, [`pause ${runtimeId}`, `resume ${runtimeId}`]);

      // Concurrent pauses and resumes apply one after another and leave row and driver agreeing.
      await Promise.all([act(t, s.id, 'pause'), act(t, s.id, 'resume'), act(t, s.id, 'pause')]);
      const status = (await t.request('GET', `/api/v1/sandbox/${s.id}`)).json<Sandbox>().status;
      assert.equal(status, runtime.frozen.has(runtimeId) ? 'PAUSED' : 'RUNNING');

      assert.equal((await act(t, s.id, 'pause')).status, 200);
      const deleted = await t.request('DELETE', `/api/v1/sandbox/${s.id}`);
      assert.equal(deleted.statusCode, 200, deleted.body);
      assert.equal((await t.request('GET', `/api/v1/sandbox/${s.id}`)).json<Sandbox>().status, 'TERMINATED');
      assert.ok(!runtime.live().includes(s.id), 'the paused sandbox was removed');
    } finally {
      await t.close();
    }
  });

  it('answers clear 4xx: unknown or foreign sandbox 404, wrong status 409, a driver that cannot pause 409', async () => {
    const runtime = new PausableRuntime();
    const t = await server(runtime);
    try {
      assert.equal((await act(t, 'nosuchsandbox', 'pause')).status, 404);
      assert.equal((await act(t, 'nosuchsandbox', 'resume')).status, 404);
      runtime.openAll();
      const s = await createRunning(t);
      const other = await t.createUser(`other-${randomBytes(3).toString('hex')}`);
      const foreign = await act(t, s.id, 'pause', other.key);
      assert.equal(foreign.status, 404);
      assert.equal(foreign.body.code, 'SANDBOX_NOT_FOUND');
      assert.equal((await t.request('GET', `/api/v1/sandbox/${s.id}`)).json<Sandbox>().status, 'RUNNING');

      const ended = await createRunning(t);
      assert.equal((await t.request('DELETE', `/api/v1/sandbox/${ended.id}`)).statusCode, 200);
      for (const verb of ['pause', 'resume'] as const) {
        const r = await act(t, ended.id, verb);
        assert.equal(r.status, 409, `${verb} of a TERMINATED sandbox`);
        assert.equal(r.body.code, 'SANDBOX_NOT_RUNNING');
        assert.match(r.body.detail, /TERMINATED/);
      }
      assert.ok(!runtime.calls.some((c) => c.includes(ended.id)), 'the driver was not asked');
    } finally {
      runtime.openAll();
      await t.close();
    }

    // A sandbox still starting cannot be paused.
    const gated = new PausableRuntime();
    const g = await server(gated, { createWaitMs: 0 });
    try {
      const response = await g.request('POST', '/api/v1/sandbox', { body: { name: 'p', docker_image: 'busybox:latest' } });
      const { id } = response.json<Sandbox>();
      await gated.started(id);
      const r = await act(g, id, 'pause');
      assert.equal(r.status, 409);
      assert.equal(r.body.code, 'SANDBOX_NOT_RUNNING');
      assert.match(r.body.detail, /PROVISIONING|PENDING/);
      assert.equal((await act(g, id, 'resume')).status, 409);
    } finally {
      gated.openAll();
      await g.close();
    }

    // A driver without the capability.
    const plain = new GatedRuntime();
    plain.openAll();
    const p = await server(plain);
    try {
      const s = await createRunning(p);
      for (const verb of ['pause', 'resume'] as const) {
        const r = await act(p, s.id, verb);
        assert.equal(r.status, 409, `${verb} on a driver that cannot pause`);
        assert.equal(r.body.code, 'PAUSE_UNSUPPORTED');
      }
      assert.equal((await p.request('GET', `/api/v1/sandbox/${s.id}`)).json<Sandbox>().status, 'RUNNING');
    } finally {
      await p.close();
    }
  });

  it('timers stop while paused: no timeout or idle timeout ends a PAUSED sandbox; after resume each has the time it had left', async () => {
    const runtime = new PausableRuntime();
    runtime.openAll();
    const t = await server(runtime);
    try {
      const lifetime = await createRunning(t, { timeout_minutes: 1 });
      const idle = await createRunning(t, { timeout_minutes: 60, idle_timeout_minutes: 1 });
      for (const s of [lifetime, idle]) assert.equal((await act(t, s.id, 'pause')).status, 200);
      const store = t.server.store;
      const statusOf = async (id: string): Promise<string | undefined> => (await store.getSandbox(id))?.status;

      // Far past both deadlines as they were: paused, neither ends.
      await t.server.reconciler.reconcile(Date.now() + 30 * 60_000);
      assert.equal(await statusOf(lifetime.id), 'PAUSED');
      assert.equal(await statusOf(idle.id), 'PAUSED');

      // Each ran 30 s (active until then), then stayed paused 10 minutes: 30 s are left of each minute.
      const now = Date.now();
      const iso = (ms: number): string => new Date(ms).toISOString();
      for (const s of [lifetime, idle]) {
        await store.updateSandbox(s.id, { startedAt: iso(now - 630_000), lastActivityAt: iso(now - 600_000), pausedAt: iso(now - 600_000) });
        assert.equal((await act(t, s.id, 'resume')).status, 200);
      }
      const resumed = await store.getSandbox(lifetime.id);
      assert.ok(resumed && resumed.pausedMs >= 600_000 && resumed.pausedAt === null, `pausedMs ${resumed?.pausedMs}`);

      await t.server.reconciler.reconcile(Date.now() + 10_000);
      assert.equal(await statusOf(lifetime.id), 'RUNNING', 'the lifetime has about 30 s left');
      assert.equal(await statusOf(idle.id), 'RUNNING', 'the idle timer has about 30 s left');

      await t.server.reconciler.reconcile(Date.now() + 60_000);
      const timedOut = await store.getSandbox(lifetime.id);
      assert.equal(timedOut?.status, 'TIMEOUT');
      assert.equal(timedOut?.terminationReason, 'timeout');
      const idled = await store.getSandbox(idle.id);
      assert.equal(idled?.status, 'TIMEOUT');
      assert.equal(idled?.terminationReason, 'idle_timeout');
    } finally {
      await t.close();
    }
  });

  it('PAUSED survives a restart: the reconciler keeps it paused (freezing it again when the driver lost that) and never takes it for dead', async () => {
    const runtime = new PausableRuntime();
    runtime.openAll();
    const dataDir = mkdtempSync(join(tmpdir(), 'corral-pause-'));
    const instanceId = `pause-${randomBytes(4).toString('hex')}`;
    try {
      const first = await server(runtime, { dataDir, instanceId });
      const s = await createRunning(first);
      assert.equal((await act(first, s.id, 'pause')).status, 200);
      await first.close();

      runtime.frozen.clear(); // thawed while the server was down (an engine restart)
      const second = await server(runtime, { dataDir, instanceId, bootstrapApiKey: first.adminKey });
      try {
        assert.equal((await second.request('GET', `/api/v1/sandbox/${s.id}`)).json<Sandbox>().status, 'PAUSED');
        assert.ok(runtime.frozen.has(`gated-${s.id}`), 'the startup pass froze it again');
        await second.server.reconciler.reconcile(Date.now() + 24 * 60 * 60_000);
        assert.equal((await second.request('GET', `/api/v1/sandbox/${s.id}`)).json<Sandbox>().status, 'PAUSED');
        const r = await act(second, s.id, 'resume');
        assert.equal(r.status, 200);
        assert.equal(r.body.status, 'RUNNING');
        assert.ok(!runtime.frozen.has(`gated-${s.id}`));
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CorralConfig } from '../config.js';
import { buildImage } from '../images/image-catalog.js';
import { createRuntimeImages } from '../runtime/create-runtime.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import { TEST_IMAGE, eventually, ociMissing, unavailableSuite } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

interface Sandbox {
  id: string;
  status: string;
  runtimeId?: string;
}

const BODY = { name: 'held', docker_image: 'busybox:latest' };

/** A server whose sandboxes provision only when the test opens their gate. */
async function gatedServer(overrides: Partial<CorralConfig> = {}): Promise<{ t: TestServer; runtime: GatedRuntime; close: () => Promise<void> }> {
  const runtime = new GatedRuntime();
  const t = await startTestServer({ instanceId: `held-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000, ...overrides }, {}, { runtime });
  return {
    t,
    runtime,
    async close() {
      runtime.openAll();
      await t.close();
    },
  };
}

/** POSTs a create and reports how long the answer took. */
async function timedCreate(
  t: TestServer,
  body: Record<string, unknown> = BODY,
  headers: Record<string, string> = {},
): Promise<{ status: number; sandbox: Sandbox; ms: number; body: string }> {
  const started = performance.now();
  const response = await t.request('POST', '/api/v1/sandbox', { body, headers });
  return { status: response.statusCode, sandbox: response.json<Sandbox>(), ms: performance.now() - started, body: response.body };
}

/** The id of the one sandbox the gated runtime has been asked to create, once it has. */
async function firstCreated(runtime: GatedRuntime): Promise<string> {
  return eventually(() => runtime.created[0], 5_000, 'the runtime to be asked for a sandbox');
}

describe('held create (POST /sandbox answers once the sandbox has started, up to a bound)', { timeout: 60_000 }, () => {
  it('answers RUNNING when the sandbox starts within the bound', async () => {
    const s = await gatedServer({ createWaitMs: 5_000 });
    try {
      const answer = timedCreate(s.t);
      const id = await firstCreated(s.runtime);
      await new Promise((resolve) => setTimeout(resolve, 150));
      s.runtime.open(id);
      const { status, sandbox, ms } = await answer;
      assert.equal(status, 201);
      assert.equal(sandbox.id, id);
      assert.equal(sandbox.status, 'RUNNING', 'the answer is the sandbox as it is once started');
      assert.ok(ms >= 140 && ms < 4_000, `answered after ${Math.round(ms)} ms: held until the start, not to the bound`);
    } finally {
      await s.close();
    }
  });

  it('answers PROVISIONING at the bound when the sandbox is not up by then, and provisioning goes on', async () => {
    const s = await gatedServer({ createWaitMs: 300 });
    try {
      const { status, sandbox, ms } = await timedCreate(s.t);
      assert.equal(status, 201);
      assert.equal(sandbox.status, 'PROVISIONING');
      assert.ok(ms >= 290 && ms < 3_000, `answered after ${Math.round(ms)} ms, at the 300 ms bound`);
      s.runtime.open(sandbox.id);
      await eventually(async () => ((await s.t.request('GET', `/api/v1/sandbox/${sandbox.id}`)).json<Sandbox>().status === 'RUNNING' ? true : undefined), 5_000, 'RUNNING');
    } finally {
      await s.close();
    }
  });

  it('returns the same sandbox, also held, to an idempotent retry during the hold', async () => {
    const s = await gatedServer({ createWaitMs: 5_000 });
    try {
      const body = { ...BODY, idempotency_key: 'retry-during-hold' };
      const first = timedCreate(s.t, body);
      const id = await firstCreated(s.runtime);
      const retry = timedCreate(s.t, body);
      await new Promise((resolve) => setTimeout(resolve, 100));
      s.runtime.open(id);
      const [a, b] = await Promise.all([first, retry]);
      assert.equal(a.status, 201);
      assert.equal(b.status, 201);
      assert.equal(b.sandbox.id, id, 'the retry names the same sandbox');
      assert.equal(a.sandbox.status, 'RUNNING');
      assert.equal(b.sandbox.status, 'RUNNING', 'the retry was held too');
      assert.deepEqual(s.runtime.created, [id], 'one sandbox was provisioned');
    } finally {
      await s.close();
    }
  });

  it('answers TERMINATED at once when the sandbox is deleted during the hold, and leaves no container', async () => {
    const s = await gatedServer({ createWaitMs: 10_000 });
    try {
      const answer = timedCreate(s.t);
      const id = await firstCreated(s.runtime);
      const deleted = await s.t.request('DELETE', `/api/v1/sandbox/${id}`);
      assert.equal(deleted.statusCode, 200, deleted.body);
      const { status, sandbox, ms } = await answer;
      assert.equal(status, 201);
      assert.equal(sandbox.status, 'TERMINATED');
      assert.ok(ms < 5_000, `answered after ${Math.round(ms)} ms, not at the 10 s bound`);
      // Provisioning under way finishes, sees the delete, and removes its container.
      s.runtime.open(id);
      await eventually(() => (s.t.server.lifecycle.isProvisioning(id) ? undefined : true), 5_000, 'provisioning to end');
      assert.deepEqual(s.runtime.live(), []);
    } finally {
      await s.close();
    }
  });

  it('keeps provisioning when the client goes away during the hold: the sandbox ends RUNNING, nothing orphaned', async () => {
    const s = await gatedServer({ createWaitMs: 10_000 });
    try {
      const url = new URL('/api/v1/sandbox', await s.t.server.listen());
      const closed = new Promise<void>((resolve) => {
        const req = httpRequest(url, { method: 'POST', headers: { authorization: `Bearer ${s.t.adminKey}`, 'content-type': 'application/json' } });
        req.on('error', () => resolve());
        req.on('close', () => resolve());
        req.end(JSON.stringify(BODY));
        void firstCreated(s.runtime).then(() => req.destroy());
      });
      await closed;
      const id = await firstCreated(s.runtime);
      s.runtime.open(id);
      const row = await eventually(async () => {
        const sandbox = await s.t.server.store.getSandbox(id);
        return sandbox?.status === 'RUNNING' ? sandbox : undefined;
      }, 5_000, 'RUNNING');
      assert.equal(row.runtimeId, `gated-${id}`);
      assert.deepEqual(s.runtime.live(), [id], 'exactly the one container, owned by its row');
    } finally {
      await s.close();
    }
  });

  it('answers at once with X-Corral-Create-Wait: 0, with CORRAL_CREATE_WAIT_MS=0, and on CORRAL_RUNTIME=none', async () => {
    const held = await gatedServer({ createWaitMs: 10_000 });
    try {
      const optOut = await timedCreate(held.t, BODY, { 'X-Corral-Create-Wait': '0' });
      assert.equal(optOut.status, 201);
      assert.ok(['PENDING', 'PROVISIONING'].includes(optOut.sandbox.status), optOut.sandbox.status);
      assert.ok(optOut.ms < 2_000, `answered after ${Math.round(optOut.ms)} ms`);
      const shorter = await timedCreate(held.t, BODY, { 'X-Corral-Create-Wait': '200' });
      assert.equal(shorter.sandbox.status, 'PROVISIONING');
      assert.ok(shorter.ms >= 190 && shorter.ms < 3_000, `a shorter hold asked for is honoured (${Math.round(shorter.ms)} ms)`);
      const bad = await timedCreate(held.t, BODY, { 'X-Corral-Create-Wait': 'soon' });
      assert.equal(bad.status, 422, bad.body);
      assert.equal(JSON.parse(bad.body).code, 'VALIDATION_FAILED');
      assert.equal(held.runtime.created.length, 2, 'a refused request creates nothing');
    } finally {
      await held.close();
    }
    const off = await gatedServer({ createWaitMs: 0 });
    try {
      const answer = await timedCreate(off.t);
      assert.ok(['PENDING', 'PROVISIONING'].includes(answer.sandbox.status));
      assert.ok(answer.ms < 2_000);
    } finally {
      await off.close();
    }
    const none = await startTestServer({ runtime: 'none', createWaitMs: 10_000 });
    try {
      const answer = await timedCreate(none);
      assert.equal(answer.sandbox.status, 'PENDING');
      assert.ok(answer.ms < 2_000, `no runtime: answered after ${Math.round(answer.ms)} ms`);
    } finally {
      await none.close();
    }
  });
});

describe('held status:batchGet (answers once the sandboxes asked for have started, up to a bound)', { timeout: 60_000 }, () => {
  /** Asks the batch status the way the Prime SDK's wait does, and times the answer. */
  async function timedBatch(t: TestServer, ids: string[], headers: Record<string, string> = {}): Promise<{ statuses: Record<string, string>; ms: number; status: number }> {
    const started = performance.now();
    const response = await t.request('POST', '/api/v1/sandbox/status:batchGet', { body: { sandbox_ids: ids }, headers });
    const body = response.json<{ statuses?: Array<{ sandbox_id: string; status: string }> }>();
    return { status: response.statusCode, statuses: Object.fromEntries((body.statuses ?? []).map((s) => [s.sandbox_id, s.status])), ms: performance.now() - started };
  }

  it('holds until every starting sandbox asked for is RUNNING, then answers them all', async () => {
    const s = await gatedServer({ createWaitMs: 5_000 });
    try {
      const ids = await Promise.all([0, 1].map(async () => (await timedCreate(s.t, BODY, { 'X-Corral-Create-Wait': '0' })).sandbox.id));
      const answer = timedBatch(s.t, ids);
      await new Promise((resolve) => setTimeout(resolve, 100));
      s.runtime.open(ids[0] ?? '');
      await new Promise((resolve) => setTimeout(resolve, 150));
      s.runtime.open(ids[1] ?? '');
      const { statuses, ms } = await answer;
      assert.deepEqual(statuses, { [ids[0] ?? '']: 'RUNNING', [ids[1] ?? '']: 'RUNNING' });
      assert.ok(ms >= 240 && ms < 4_000, `answered after ${Math.round(ms)} ms: when the last one started`);
    } finally {
      await s.close();
    }
  });

  it('answers at the bound with what is still starting; at once for settled or unknown ids and with the header at 0', async () => {
    const s = await gatedServer({ createWaitMs: 300 });
    try {
      const { sandbox } = await timedCreate(s.t, BODY, { 'X-Corral-Create-Wait': '0' });
      const bounded = await timedBatch(s.t, [sandbox.id]);
      assert.equal(bounded.statuses[sandbox.id], 'PROVISIONING');
      assert.ok(bounded.ms >= 290 && bounded.ms < 3_000, `answered after ${Math.round(bounded.ms)} ms, at the 300 ms bound`);
      const optOut = await timedBatch(s.t, [sandbox.id], { 'X-Corral-Create-Wait': '0' });
      assert.ok(optOut.ms < 250, `opted out: answered after ${Math.round(optOut.ms)} ms`);
      s.runtime.open(sandbox.id);
      await eventually(async () => ((await timedBatch(s.t, [sandbox.id])).statuses[sandbox.id] === 'RUNNING' ? true : undefined), 5_000, 'RUNNING');
      const settled = await timedBatch(s.t, [sandbox.id, 'nosuchsandboxid0000000000']);
      assert.equal(settled.status, 200);
      assert.ok(settled.ms < 250, `nothing starting: answered after ${Math.round(settled.ms)} ms`);
    } finally {
      await s.close();
    }
  });
});

const missing = ociMissing();
if (missing) {
  unavailableSuite('held create on the oci driver', missing);
} else {
  describe('held create on the oci driver', { timeout: 120_000 }, () => {
    let t: TestServer;
    before(async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'corral-held-'));
      await buildImage('busybox', TEST_IMAGE, await createRuntimeImages({ runtime: 'oci', dataDir }));
      t = await startTestServer({ runtime: 'oci', dataDir, instanceId: `held-${randomBytes(4).toString('hex')}`, createWaitMs: 20_000 });
    });
    after(async () => {
      const runtime = t.server.runtime;
      if (runtime) for (const c of await runtime.list()) await runtime.remove(c.runtimeId);
      await t.close();
      rmSync(t.dataDir, { recursive: true, force: true });
    });

    it('answers RUNNING, and the first exec works at once', async () => {
      const { status, sandbox, body } = await timedCreate(t, { name: 'held', docker_image: TEST_IMAGE });
      assert.equal(status, 201, body);
      assert.equal(sandbox.status, 'RUNNING');
      const auth = (await t.request('POST', `/api/v1/sandbox/${sandbox.id}/auth`)).json<{ token: string; user_ns: string; job_id: string }>();
      const exec = await t.server.app.inject({
        method: 'POST',
        url: `/gateway/${auth.user_ns}/${auth.job_id}/exec`,
        headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ command: 'echo ready', sandbox_id: sandbox.id, timeout: 10 }),
      });
      assert.equal(exec.statusCode, 200, exec.body);
      assert.equal(exec.json<{ stdout: string }>().stdout, 'ready\n');
      assert.equal((await t.request('DELETE', `/api/v1/sandbox/${sandbox.id}`)).statusCode, 200);
    });
  });
}

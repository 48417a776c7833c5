import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { CorralConfig } from '../config.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import { eventually } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

interface Sandbox {
  id: string;
  status: string;
  errorType: string | null;
  errorMessage: string | null;
}

const GiB = 1024 ** 3;
const BODY = { name: 'admit', docker_image: 'busybox:latest', cpu_cores: 1, memory_gb: 1 };

/**
 * A server on a runtime that reports `cpuCores` of capacity (and 64 GiB of memory), admitted 1:1
 * (no overcommit). Every create finishes at once.
 */
async function admissionServer(
  cpuCores: number,
  overrides: Partial<CorralConfig> = {},
  runtime = new GatedRuntime(),
): Promise<{ t: TestServer; runtime: GatedRuntime }> {
  runtime.reportedCapacity = { cpuCores, memoryBytes: 64 * GiB };
  runtime.openAll();
  const t = await startTestServer(
    { instanceId: `admit-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000, overcommitCpu: 1, overcommitMemory: 1, ...overrides },
    {},
    { runtime },
  );
  return { t, runtime };
}

async function create(t: TestServer, key: string | undefined, body: Record<string, unknown> = {}): Promise<{ status: number; sandbox: Sandbox; ms: number; headers: Record<string, unknown>; body: string }> {
  const started = performance.now();
  const res = await t.request('POST', '/api/v1/sandbox', { body: { ...BODY, ...body }, ...(key !== undefined ? { key } : {}) });
  return { status: res.statusCode, sandbox: res.json<Sandbox>(), ms: performance.now() - started, headers: res.headers, body: res.body };
}

async function get(t: TestServer, id: string, key?: string): Promise<Sandbox> {
  const res = await t.request('GET', `/api/v1/sandbox/${id}`, key !== undefined ? { key } : {});
  assert.equal(res.statusCode, 200, res.body);
  return res.json<Sandbox>();
}

async function running(t: TestServer, id: string, key?: string): Promise<void> {
  await eventually(async () => ((await get(t, id, key)).status === 'RUNNING' ? true : undefined), 5_000, `${id} to run`);
}

async function remove(t: TestServer, id: string): Promise<void> {
  const res = await t.request('DELETE', `/api/v1/sandbox/${id}`);
  assert.equal(res.statusCode, 200, res.body);
}

describe('admission (creates wait, PENDING, for capacity; round-robin across users)', { timeout: 60_000 }, () => {
  it('queues what does not fit, answers it at once with its reason, and starts it round-robin across users when room frees', async () => {
    const { t, runtime } = await admissionServer(1);
    try {
      const alice = await t.createUser('alice');
      const bob = await t.createUser('bob');
      const first = await create(t, alice.key);
      assert.equal(first.status, 201, first.body);
      assert.equal(first.sandbox.status, 'RUNNING');
      const a2 = await create(t, alice.key);
      assert.equal(a2.status, 201, a2.body);
      assert.equal(a2.sandbox.status, 'PENDING');
      assert.ok(a2.ms < 1_500, `a queued create is not held (${a2.ms} ms)`);
      assert.match(a2.sandbox.errorMessage ?? '', /^waiting for capacity: 0\.0 of 1\.0 CPU free, needs 1\.0; 1st in queue$/);
      const a3 = (await create(t, alice.key)).sandbox;
      const b1 = (await create(t, bob.key)).sandbox;
      const b2 = (await create(t, bob.key)).sandbox;
      // Served order: a2, b1, a3, b2.
      assert.match((await get(t, b1.id, bob.key)).errorMessage ?? '', /; 2nd in queue$/);
      assert.match((await get(t, a3.id, alice.key)).errorMessage ?? '', /; 3rd in queue$/);
      const context = (await t.request('GET', `/api/v1/sandbox/${b2.id}/error-context`, { key: bob.key })).json<Sandbox>();
      assert.equal(context.status, 'PENDING');
      assert.equal(context.errorType, null);
      assert.match(context.errorMessage ?? '', /^waiting for capacity: .*; 4th in queue$/);
      const batch = await t.request('POST', '/api/v1/sandbox/status:batchGet', { body: { sandbox_ids: [b1.id, b2.id] }, key: bob.key });
      const statuses = batch.json<{ statuses: Array<{ sandbox_id: string; status: string; error_message: string | null }> }>().statuses;
      assert.deepEqual(statuses.map((s) => s.status), ['PENDING', 'PENDING']);
      assert.match(statuses[0]?.error_message ?? '', /2nd in queue/);
      assert.match(statuses[1]?.error_message ?? '', /4th in queue/);
      assert.deepEqual(runtime.created, [first.sandbox.id]);

      const order: Array<[string, string]> = [
        [a2.sandbox.id, alice.key],
        [b1.id, bob.key],
        [a3.id, alice.key],
        [b2.id, bob.key],
      ];
      let previous = first.sandbox.id;
      for (const [id, key] of order) {
        await remove(t, previous);
        await running(t, id, key);
        previous = id;
      }
      assert.deepEqual(runtime.created, [first.sandbox.id, ...order.map(([id]) => id)]);
      assert.equal((await get(t, b2.id, bob.key)).errorMessage, null);
    } finally {
      await t.close();
    }
  });

  it('refuses at once (422 on the field) a create that could never fit', async () => {
    const { t } = await admissionServer(2);
    try {
      const cpu = await create(t, undefined, { cpu_cores: 3 });
      assert.equal(cpu.status, 422, cpu.body);
      assert.equal(JSON.parse(cpu.body).code, 'UNSUPPORTED_RESOURCE');
      assert.equal(JSON.parse(cpu.body).errors[0].param, 'cpu_cores');
      const memory = await create(t, undefined, { memory_gb: 65 });
      assert.equal(memory.status, 422, memory.body);
      assert.equal(JSON.parse(memory.body).errors[0].param, 'memory_gb');
      assert.equal((await t.request('GET', '/api/v1/sandbox')).json<{ total: number }>().total, 0);
      const fits = await create(t, undefined, { cpu_cores: 2 });
      assert.equal(fits.sandbox.status, 'RUNNING');
    } finally {
      await t.close();
    }
  });

  it('takes a guaranteed sandbox\'s whole size out of the capacity (its limits × the overcommit ratio)', async () => {
    // 2 cores × CORRAL_OVERCOMMIT_CPU 2: 4.0 of reservations.
    const { t } = await admissionServer(2, { overcommitCpu: 2 });
    try {
      const plain = [await create(t, undefined), await create(t, undefined)];
      for (const p of plain) assert.equal(p.sandbox.status, 'RUNNING', p.body);
      const guaranteed = await create(t, undefined, { guaranteed: true });
      assert.equal(guaranteed.status, 201, guaranteed.body);
      assert.equal(guaranteed.sandbox.status, 'RUNNING', 'a 1-core guaranteed sandbox reserves 2.0 and fits in the 2.0 left');
      const next = await create(t, undefined);
      assert.equal(next.sandbox.status, 'PENDING');
      assert.match(next.sandbox.errorMessage ?? '', /^waiting for capacity: 0\.0 of 4\.0 CPU free, needs 1\.0; 1st in queue$/);
      // 3 cores fit 4.0 as a plain sandbox but not as a guaranteed one (6.0).
      const big = await create(t, undefined, { guaranteed: true, cpu_cores: 3 });
      assert.equal(big.status, 422, big.body);
      assert.match(big.body, /asks 3 CPU cores as a guaranteed sandbox/);
      await remove(t, guaranteed.sandbox.id);
      await running(t, next.sandbox.id);
    } finally {
      await t.close();
    }
  });

  it('ends a create still waiting at its admission_timeout_seconds in ERROR (ADMISSION_TIMEOUT)', async () => {
    const { t, runtime } = await admissionServer(1);
    try {
      const bad = await create(t, undefined, { admission_timeout_seconds: 0 });
      assert.equal(bad.status, 422, bad.body);
      const first = await create(t, undefined);
      const waiting = await create(t, undefined, { admission_timeout_seconds: 1 });
      assert.equal(waiting.sandbox.status, 'PENDING');
      const ended = await eventually(async () => {
        const row = await get(t, waiting.sandbox.id);
        return row.status === 'ERROR' ? row : undefined;
      }, 5_000, 'the deadline to end the create');
      assert.equal(ended.errorType, 'ADMISSION_TIMEOUT');
      assert.match(ended.errorMessage ?? '', /admission_timeout_seconds/);
      // It never started, and its place is free: the next create starts when the first ends.
      const next = await create(t, undefined);
      await remove(t, first.sandbox.id);
      await running(t, next.sandbox.id);
      assert.deepEqual(runtime.created, [first.sandbox.id, next.sandbox.id]);
    } finally {
      await t.close();
    }
  });

  it('answers 429 ADMISSION_QUEUE_FULL with Retry-After, storing nothing, past the queue bounds', async () => {
    const { t } = await admissionServer(1, { admissionQueueMax: 3, admissionQueueMaxPerUser: 2 });
    try {
      const alice = await t.createUser('alice');
      const bob = await t.createUser('bob');
      assert.equal((await create(t, alice.key)).sandbox.status, 'RUNNING');
      assert.equal((await create(t, alice.key)).sandbox.status, 'PENDING');
      assert.equal((await create(t, alice.key)).sandbox.status, 'PENDING');
      const mine = await create(t, alice.key);
      assert.equal(mine.status, 429, mine.body);
      assert.equal(JSON.parse(mine.body).code, 'ADMISSION_QUEUE_FULL');
      assert.ok(Number(mine.headers['retry-after']) > 0);
      assert.equal((await create(t, bob.key)).sandbox.status, 'PENDING');
      const full = await create(t, bob.key);
      assert.equal(full.status, 429, full.body);
      assert.match(JSON.parse(full.body).detail, /CORRAL_ADMISSION_QUEUE_MAX/);
      assert.ok(Number(full.headers['retry-after']) > 0);
      const listed = await t.request('GET', '/api/v1/sandbox?user_id=' + alice.id, { key: alice.key });
      assert.equal(listed.json<{ total: number }>().total, 3);
    } finally {
      await t.close();
    }
  });

  it('counts reservations from the store across a restart and re-queues PENDING rows in their original order', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'corral-admit-'));
    const runtime = new GatedRuntime();
    const fixed = { dataDir, instanceId: `admit-${randomBytes(4).toString('hex')}`, bootstrapApiKey: `corral_test_admin_${randomBytes(6).toString('hex')}` };
    try {
      const before = await admissionServer(2, fixed, runtime);
      const big = (await create(before.t, undefined, { cpu_cores: 2 })).sandbox;
      assert.equal(big.status, 'RUNNING');
      const q1 = (await create(before.t, undefined)).sandbox;
      const q2 = (await create(before.t, undefined)).sandbox;
      const q3 = (await create(before.t, undefined, { cpu_cores: 2 })).sandbox;
      assert.deepEqual([q1.status, q2.status, q3.status], ['PENDING', 'PENDING', 'PENDING']);
      await before.t.close();

      const after = await admissionServer(2, fixed, runtime);
      try {
        // The running sandbox still holds both cores: nothing queued may start.
        assert.deepEqual(runtime.created, [big.id]);
        assert.match((await get(after.t, q1.id)).errorMessage ?? '', /0\.0 of 2\.0 CPU free, needs 1\.0; 1st in queue$/);
        assert.match((await get(after.t, q3.id)).errorMessage ?? '', /3rd in queue$/);
        await remove(after.t, big.id);
        await running(after.t, q1.id);
        await running(after.t, q2.id);
        assert.equal((await get(after.t, q3.id)).status, 'PENDING');
        assert.deepEqual(runtime.created, [big.id, q1.id, q2.id]);
        await remove(after.t, q1.id);
        await remove(after.t, q2.id);
        await running(after.t, q3.id);
      } finally {
        await after.t.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('admits and queues nothing without a runtime (CORRAL_RUNTIME=none): sandboxes stay PENDING', async () => {
    const t = await startTestServer({ admissionQueueMax: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await create(t, undefined, { cpu_cores: 16 });
        assert.equal(res.status, 201, res.body);
        assert.equal(res.sandbox.status, 'PENDING');
        assert.equal(res.sandbox.errorMessage, null);
      }
    } finally {
      await t.close();
    }
  });
});

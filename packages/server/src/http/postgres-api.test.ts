import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import pg from 'pg';
import { startTestServer } from '../testing/test-server.js';

/**
 * Runs `body` against a fresh scratch database on the test PostgreSQL (`CORRAL_TEST_DATABASE_URL`),
 * dropped afterwards; skips (fails under `CI=true`) without one.
 */
async function withScratchDatabase(t: TestContext, prefix: string, body: (url: string) => Promise<void>): Promise<void> {
  const url = process.env.CORRAL_TEST_DATABASE_URL;
  if (!url) {
    if (process.env.CI === 'true') assert.fail('CORRAL_TEST_DATABASE_URL is required under CI=true (scripts/test.sh sets it)');
    t.skip('CORRAL_TEST_DATABASE_URL unset (scripts/ensure-postgres.sh prints one)');
    return;
  }
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const name = `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  await admin.query(`create database ${name}`);
  const scratch = new URL(url);
  scratch.pathname = `/${name}`;
  try {
    await body(scratch.toString());
  } finally {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

/**
 * The control plane on PostgreSQL (`DATABASE_URL`), in a scratch database: the API behaves as on
 * SQLite, and its state survives a restart. The store suite covers every query on both engines;
 * this checks the wiring.
 */
test('the API on PostgreSQL keeps its state across a restart', async (t) => {
  await withScratchDatabase(t, 'corral_api', async (scratch) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'corral-pg-api-'));
    try {
      const first = await startTestServer({ databaseUrl: scratch, dataDir });
      const user = await first.createUser('pg-user');
      const created = await first.request('POST', '/api/v1/sandbox', {
        key: user.key,
        body: { name: 'on-pg', docker_image: 'busybox', labels: ['a', 'b'], secrets: { S: 'hidden' }, cpu_cores: 0.1, idempotency_key: 'k1' },
      });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json<{ id: string }>().id;
      const again = await first.request('POST', '/api/v1/sandbox', { key: user.key, body: { name: 'on-pg', docker_image: 'busybox', idempotency_key: 'k1' } });
      assert.equal(again.json<{ id: string }>().id, id);
      await first.close();

      const second = await startTestServer({ databaseUrl: scratch, dataDir, bootstrapApiKey: first.adminKey });
      try {
        const listed = await second.request('GET', '/api/v1/sandbox?labels=a&labels=b', { key: user.key });
        assert.equal(listed.statusCode, 200, listed.body);
        const body = listed.json<{ sandboxes: Array<{ id: string; cpuCores: number; secrets: Record<string, string> }>; total: number }>();
        assert.equal(body.total, 1);
        assert.equal(body.sandboxes[0]?.id, id);
        assert.equal(body.sandboxes[0]?.cpuCores, 0.1);
        assert.deepEqual(body.sandboxes[0]?.secrets, { S: '***' });
        const deleted = await second.request('DELETE', `/api/v1/sandbox/${id}`, { key: user.key });
        assert.equal(deleted.statusCode, 200);
        assert.equal((await second.request('GET', `/api/v1/sandbox/${id}`, { key: user.key })).json<{ status: string }>().status, 'TERMINATED');
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

test('quotas hold across two replicas sharing PostgreSQL: 50 concurrent creates do not overshoot', async (t) => {
  await withScratchDatabase(t, 'corral_quota', async (scratch) => {
    const a = await startTestServer({ databaseUrl: scratch, instanceId: 'quota-a' });
    const b = await startTestServer({ databaseUrl: scratch, instanceId: 'quota-b', bootstrapApiKey: a.adminKey });
    try {
      const user = await a.createUser('pg-quota');
      assert.equal((await a.request('PUT', `/api/v1/users/${user.id}/quota`, { body: { sandboxes: 10 } })).statusCode, 200);
      const create = (server: typeof a) =>
        server.request('POST', '/api/v1/sandbox', { key: user.key, body: { name: 'q', docker_image: 'busybox', cpu_cores: 0.1, memory_gb: 0.1, disk_size_gb: 0.1 } });
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => create(i % 2 === 0 ? a : b)));
      const codes = results.map((r) => r.statusCode);
      assert.equal(codes.filter((c) => c === 201).length, 10, codes.join(','));
      assert.ok(codes.every((c) => c === 201 || c === 403), codes.join(','));
      assert.equal((await a.server.store.quotaUsage('user', user.id)).sandboxes, 10);
    } finally {
      await b.close();
      await a.close();
    }
  });
});

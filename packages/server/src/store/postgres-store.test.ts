import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import pg from 'pg';
import { openStore } from './open-store.js';
import { runStoreSuite } from './store-suite.js';

/**
 * Runs the store suite on a real PostgreSQL: `CORRAL_TEST_DATABASE_URL`, or else the throwaway
 * cluster scripts/ensure-postgres.sh starts (and installs, as root). Without PostgreSQL the
 * tests fail under CI=true and are skipped otherwise.
 */
async function databaseUrl(): Promise<{ url: string } | { reason: string }> {
  let url = process.env.CORRAL_TEST_DATABASE_URL;
  if (!url) {
    const script = fileURLToPath(new URL('../../../../scripts/ensure-postgres.sh', import.meta.url));
    try {
      const out = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
      url = out.trim().split('\n').at(-1);
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? '';
      return { reason: `scripts/ensure-postgres.sh failed: ${String(error)}\n${stderr}` };
    }
    if (!url) return { reason: 'scripts/ensure-postgres.sh printed no URL' };
  }
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
    await client.query('select 1');
    return { url };
  } catch (error) {
    return { reason: `cannot connect to ${url}: ${String(error)}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}

const found = await databaseUrl();

if ('reason' in found) {
  test('PostgreSQL store', (t) => {
    if (process.env.CI === 'true') assert.fail(`PostgreSQL is required under CI=true: ${found.reason}`);
    t.skip(`PostgreSQL unavailable: ${found.reason}`);
  });
} else {
  const { url } = found;
  runStoreSuite('PostgreSQL store', () => openStore({ kind: 'postgres', url, poolSize: 10 }));

  describe('PostgreSQL migrations', () => {
    test('several replicas migrating a fresh database at once all succeed', async (t) => {
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const name = `corral_migrate_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
      try {
        await admin.query(`create database ${name}`);
      } catch (error) {
        await admin.end();
        t.skip(`cannot create a scratch database: ${String(error)}`);
        return;
      }
      try {
        const fresh = new URL(url);
        fresh.pathname = `/${name}`;
        const stores = await Promise.all(
          Array.from({ length: 4 }, () => openStore({ kind: 'postgres', url: fresh.toString(), poolSize: 2 })),
        );
        try {
          const [first] = stores;
          assert.ok(first);
          await first.migrate();
          assert.deepEqual((await first.listSandboxes({}, 1, 10)).total, 0);
        } finally {
          await Promise.all(stores.map((s) => s.close()));
        }
      } finally {
        await admin.query(`drop database if exists ${name} with (force)`);
        await admin.end();
      }
    });
  });
}

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, sql } from 'kysely';
import { migrationProvider } from './migrations.js';
import { openStore } from './open-store.js';

it('migration 0006 gives earlier network_access: false rows the empty allow list, and started rows generation 1 applied', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-egress-migration-'));
  try {
    const path = join(dir, 'corral.db');
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new BetterSqlite3(path) }) });
    const migrated = await new Migrator({ db, provider: migrationProvider }).migrateTo('0005_access_quotas');
    assert.equal(migrated.error, undefined);
    const row = (id: string, networkAccess: number, status: string) => sql`
      insert into sandboxes (id, name, docker_image, cpu_cores, memory_gb, disk_size_gb, gpu_count, vm, network_access, status,
        timeout_minutes, labels, user_id, guaranteed, created_at, updated_at)
      values (${id}, 'old', 'busybox', 1, 1, 1, 0, 0, ${networkAccess}, ${status}, 60, '[]', 'u1', 0, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`;
    await row('offline', 0, 'RUNNING').execute(db);
    await row('online', 1, 'RUNNING').execute(db);
    await row('waiting', 1, 'PENDING').execute(db);
    await db.destroy();

    const store = await openStore({ kind: 'sqlite', path });
    try {
      const [offline, online, waiting] = await Promise.all(['offline', 'online', 'waiting'].map((id) => store.getSandbox(id)));
      assert.deepEqual([offline?.networkAccess, offline?.networkAllowlist, offline?.networkDenylist], [false, [], null]);
      assert.deepEqual([online?.networkAccess, online?.networkAllowlist, online?.networkDenylist], [true, null, null]);
      assert.deepEqual([online?.egressGeneration, online?.egressAppliedGeneration], [1, 1]);
      assert.deepEqual([waiting?.egressGeneration, waiting?.egressAppliedGeneration], [1, 0]);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

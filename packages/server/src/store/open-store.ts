import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { KyselyStore } from './kysely-store.js';
import { withStatementCache } from './sqlite-statement-cache.js';
import type { Database } from './schema.js';
import type { Store } from './store.js';

/** Where the store lives: a SQLite file, or a PostgreSQL URL. */
export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string; poolSize?: number };

/**
 * Creates the SQLite file 0600 if it is missing, and makes it and its `-wal`/`-shm` files 0600:
 * the store holds secrets and registry passwords. SQLite gives the WAL and shared-memory files it
 * creates the database file's mode.
 */
function restrictToOwner(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(file)) chmodSync(file, 0o600);
}

/**
 * Opens the store and applies migrations. SQLite runs in WAL mode with `synchronous=NORMAL`:
 * a committed transaction survives the process being killed at any point.
 */
export async function openStore(location: StoreLocation): Promise<Store> {
  let store: KyselyStore;
  if (location.kind === 'sqlite') {
    if (location.path !== ':memory:') {
      mkdirSync(dirname(location.path), { recursive: true, mode: 0o700 });
      restrictToOwner(location.path);
    }
    const database = new BetterSqlite3(location.path);
    database.pragma('journal_mode = WAL');
    database.pragma('synchronous = NORMAL');
    database.pragma('foreign_keys = ON');
    database.pragma('busy_timeout = 5000');
    store = new KyselyStore('sqlite', new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(database) }) }));
  } else {
    const pool = new pg.Pool({ connectionString: location.url, max: location.poolSize ?? 10 });
    pool.on('error', () => {
      // An idle client lost its connection; the pool replaces it on next use.
    });
    store = new KyselyStore('postgres', new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }));
  }
  await store.migrate();
  return store;
}

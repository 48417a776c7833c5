import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/**
 * better-sqlite3 behind Kysely's `SqliteDatabase` interface, with prepared statements reused by
 * their SQL text. Kysely prepares every query afresh; on the hot read paths preparing costs as
 * much as running the query. Statements are never iterated concurrently (better-sqlite3 is
 * synchronous), so sharing one per SQL text is safe.
 */
export function withStatementCache(database: BetterSqlite3.Database, capacity = 512): SqliteDatabase {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => database.close(),
    prepare(sql: string): SqliteStatement {
      let statement = cache.get(sql);
      if (statement) {
        // Map order is insertion order: re-inserting keeps the most recently used last.
        cache.delete(sql);
      } else {
        statement = database.prepare(sql);
        if (cache.size >= capacity) {
          const oldest = cache.keys().next().value;
          if (oldest !== undefined) cache.delete(oldest);
        }
      }
      cache.set(sql, statement);
      return statement as unknown as SqliteStatement;
    },
  };
}

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import type { SandboxRecord } from '../records/sandbox-records.js';
import { openStore } from './open-store.js';
import { crashPatch, crashSandbox } from './store-crash-child.js';

const dir = mkdtempSync(join(tmpdir(), 'corral-store-crash-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const dbPath = join(dir, 'corral.db');
const child = fileURLToPath(new URL('./store-crash-child.ts', import.meta.url));

/** Runs the writer child until it has reported `stopAfter` commits, then SIGKILLs it mid-stream. */
async function runAndKill(prefix: string, workers: number, stopAfter: number): Promise<{ inserted: string[]; updated: Set<string> }> {
  const proc = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', child, dbPath, prefix, String(workers)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => proc.on('exit', (code, signal) => resolve(signal ?? code)));
  const inserted: string[] = [];
  const updated = new Set<string>();
  const lines = createInterface({ input: proc.stdout });
  for await (const line of lines) {
    const [kind, id] = line.split(' ');
    if (!id) continue;
    if (kind === 'I') inserted.push(id);
    else if (kind === 'U') updated.add(id);
    if (inserted.length + updated.size >= stopAfter && proc.exitCode === null) proc.kill('SIGKILL');
  }
  const how = await exited;
  assert.equal(how, 'SIGKILL', `the writer should die by SIGKILL, not ${String(how)}: ${stderr}`);
  return { inserted, updated };
}

test('every commit a SIGKILLed writer reported survives, and the database stays intact', async () => {
  const rounds: { prefix: string; inserted: string[]; updated: Set<string> }[] = [];
  // Several rounds on the same file: each restart recovers from the previous crash's WAL.
  for (const [round, workers, stopAfter] of [
    [0, 1, 400],
    [1, 4, 1500],
    [2, 8, 977],
  ] as const) {
    const prefix = `crash${round}`;
    const result = await runAndKill(prefix, workers, stopAfter);
    assert.ok(result.inserted.length > 50, `round ${round} reported only ${result.inserted.length} inserts`);
    assert.ok(existsSync(`${dbPath}-wal`) && statSync(`${dbPath}-wal`).size > 0, 'the killed writer leaves a WAL to recover');
    rounds.push({ prefix, ...result });
  }

  const store = await openStore({ kind: 'sqlite', path: dbPath });
  try {
    for (const { prefix, inserted, updated } of rounds) {
      for (const id of inserted) {
        const i = Number(id.slice(prefix.length + 1));
        const expected = crashSandbox(prefix, i);
        const got = await store.getSandbox(id);
        assert.ok(got, `reported insert ${id} is missing`);
        const wasUpdated = got.status === 'RUNNING';
        assert.ok(!updated.has(id) || wasUpdated, `reported update of ${id} is missing`);
        const want: SandboxRecord = wasUpdated ? { ...expected, ...crashPatch(i), updatedAt: got.updatedAt } : expected;
        assert.deepEqual(got, want);
      }
      // Whatever committed, reported or not, is whole: every stored row is exactly one of the
      // writer's records, before or after its update.
      const stored = await store.findSandboxes({ labels: ['crash'] }, 1_000_000);
      for (const s of stored.filter((r) => r.id.startsWith(`${prefix}-`))) {
        const i = Number(s.id.slice(prefix.length + 1));
        const base = crashSandbox(prefix, i);
        assert.deepEqual(s, s.status === 'RUNNING' ? { ...base, ...crashPatch(i), updatedAt: s.updatedAt } : base);
      }
    }
    // The store still accepts writes after recovery.
    const after = crashSandbox('after', 1);
    assert.equal((await store.insertSandbox(after)).created, true);
  } finally {
    await store.close();
  }

  const db = new BetterSqlite3(dbPath, { readonly: true });
  try {
    assert.deepEqual(db.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
    assert.deepEqual(db.pragma('foreign_key_check'), []);
    // The label index agrees with every sandbox's labels column.
    const rows = db.prepare('select id, labels from sandboxes').all() as { id: string; labels: string }[];
    const labelRows = db.prepare('select sandbox_id, label from sandbox_labels').all() as { sandbox_id: string; label: string }[];
    const index = new Map<string, string[]>();
    for (const { sandbox_id: id, label } of labelRows) index.set(id, [...(index.get(id) ?? []), label]);
    for (const { id, labels } of rows) {
      assert.deepEqual([...new Set(JSON.parse(labels) as string[])].sort(), (index.get(id) ?? []).sort(), id);
    }
    assert.ok(rows.length > 0);
  } finally {
    db.close();
  }
});

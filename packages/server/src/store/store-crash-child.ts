import { pathToFileURL } from 'node:url';
import { sandboxFixture } from '../testing/sandbox-fixture.js';
import type { SandboxPatch, SandboxRecord } from '../records/sandbox-records.js';
import { openStore } from './open-store.js';

/**
 * Child process of store-crash.test.ts: writes to a SQLite store until it is killed.
 *
 * `node --import tsx store-crash-child.ts <db-path> <prefix> <workers>` runs `workers` loops
 * that each insert sandbox i and then update it, printing `I <id>` after an insert resolved and
 * `U <id>` after an update resolved. A line on stdout therefore means "committed".
 */

/** The sandbox the child inserts as number `i` of `prefix`. */
export function crashSandbox(prefix: string, i: number): SandboxRecord {
  const created = new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
  return sandboxFixture({
    id: `${prefix}-${String(i).padStart(6, '0')}`,
    name: `crash ${i}`,
    dockerImage: 'python:3.11-slim',
    startCommand: i % 2 === 0 ? null : `sleep ${i}`,
    cpuCores: 0.1 * ((i % 7) + 1),
    memoryGb: 0.5,
    diskSizeGb: 1.25,
    gpuCount: i % 3,
    vm: i % 2 === 0,
    networkAccess: i % 3 === 0,
    idleTimeoutMinutes: i % 4 === 0 ? null : i,
    environmentVars: { INDEX: String(i), PAD: 'x'.repeat(i % 500) },
    secrets: i % 5 === 0 ? null : { TOKEN: `secret-${i}` },
    advancedConfigs: { nested: { i, list: [i, 'two', null] } },
    labels: [`batch-${i % 10}`, 'crash'],
    userId: `${prefix}-user-${i % 4}`,
    idempotencyKey: `${prefix}-idem-${i}`,
    createdAt: created,
    updatedAt: created,
  });
}

/** The update the child applies to sandbox `i` after inserting it. */
export function crashPatch(i: number): SandboxPatch {
  return {
    status: 'RUNNING',
    runtimeDriver: 'crash',
    runtimeId: `rt-${i}`,
    startedAt: new Date(Date.UTC(2026, 0, 2) + i * 1000).toISOString(),
    labels: [`moved-${i % 10}`, 'crash', 'running'],
  };
}

async function main(path: string, prefix: string, workers: number): Promise<void> {
  const store = await openStore({ kind: 'sqlite', path });
  let next = 0;
  const loop = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      const record = crashSandbox(prefix, i);
      await store.insertSandbox(record);
      process.stdout.write(`I ${record.id}\n`);
      const updated = await store.updateSandbox(record.id, crashPatch(i), ['PENDING']);
      if (!updated) throw new Error(`update of ${record.id} found nothing`);
      process.stdout.write(`U ${record.id}\n`);
    }
  };
  await Promise.all(Array.from({ length: workers }, loop));
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  const [path, prefix, workers] = process.argv.slice(2);
  if (!path || !prefix) throw new Error('usage: store-crash-child.ts <db-path> <prefix> [workers]');
  await main(path, prefix, Number(workers ?? '1'));
}

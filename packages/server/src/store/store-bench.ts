import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import type { SandboxRecord } from '../records/sandbox-records.js';
import { type StoreLocation, openStore } from './open-store.js';
import pg from 'pg';
import type { Store } from './store.js';

/**
 * Store latency benchmark (not a test: no timing assertions anywhere).
 *
 *   node --conditions=development --import tsx packages/server/src/store/store-bench.ts [postgres-url]
 *
 * Inserts 10,000 sandboxes, then times 5,000 getSandbox calls and 200 listSandboxes calls
 * (page 1, 100 per page) for a user with 100 sandboxes and for one with 10,000 sandboxes.
 * SQLite runs on a temp file; with a URL, PostgreSQL too, in a scratch database created next to
 * the URL's and dropped afterwards.
 */

const TOTAL = 10_000;

function record(prefix: string, i: number, userId: string): SandboxRecord {
  const created = new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
  return {
    id: `${prefix}-${String(i).padStart(6, '0')}`,
    name: `bench ${i}`,
    dockerImage: 'python:3.11-slim',
    startCommand: 'sleep infinity',
    cpuCores: 1,
    memoryGb: 2,
    diskSizeGb: 5,
    gpuCount: 0,
    gpuType: null,
    vm: false,
    networkAccess: true,
    networkAllowlist: null,
    networkDenylist: null,
    egressGeneration: 1,
    egressAppliedGeneration: 1,
    status: i % 3 === 0 ? 'TERMINATED' : 'RUNNING',
    timeoutMinutes: 60,
    idleTimeoutMinutes: null,
    terminationReason: null,
    environmentVars: { A: '1', B: '2' },
    secrets: null,
    advancedConfigs: null,
    labels: [`l${i % 10}`, 'bench'],
    userId,
    teamId: null,
    region: null,
    registryCredentialsId: null,
    guaranteed: false,
    idempotencyKey: null,
    createdAt: created,
    updatedAt: created,
    startedAt: created,
    terminatedAt: null,
    lastActivityAt: null,
    exitCode: null,
    errorType: null,
    errorMessage: null,
    runtimeDriver: 'docker',
    runtimeId: `c-${i}`,
    runtimeOwner: null,
    provisioner: null,
    admissionDeadline: null,
    kubernetesJobId: null,
    pausedAt: null,
    pausedMs: 0,
    checkpointId: null,
  };
}

async function time(label: string, calls: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  const start = performance.now();
  for (let i = 0; i < calls; i++) await fn(i);
  const ms = performance.now() - start;
  console.log(`  ${label}: ${calls} calls in ${ms.toFixed(0)} ms = ${((ms / calls) * 1000).toFixed(0)} µs/call`);
}

async function bench(kind: string, store: Store, prefix: string): Promise<void> {
  console.log(`${kind}:`);
  // Layout A: 100 users x 100 sandboxes. Layout B: one user owns another 10,000.
  const start = performance.now();
  for (let i = 0; i < TOTAL; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => store.insertSandbox(record(`${prefix}a`, i + j, `${prefix}-u${(i + j) % 100}`))));
  }
  console.log(`  insert (100 in flight): ${TOTAL} in ${(performance.now() - start).toFixed(0)} ms`);
  for (let i = 0; i < TOTAL; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => store.insertSandbox(record(`${prefix}b`, i + j, `${prefix}-big`))));
  }
  await time('getSandbox', 5000, (i) => store.getSandbox(`${prefix}a-${String((i * 7919) % TOTAL).padStart(6, '0')}`));
  await time('listSandboxes(user with 100, page 1, 100/page)', 200, (i) => store.listSandboxes({ userId: `${prefix}-u${i % 100}` }, 1, 100));
  await time('listSandboxes(user with 10,000, page 1, 100/page)', 200, () => store.listSandboxes({ userId: `${prefix}-big` }, 1, 100));
  await time('listSandboxes(user with 10,000, page 50, 100/page)', 200, () => store.listSandboxes({ userId: `${prefix}-big` }, 50, 100));
  await time('listSandboxes(user with 10,000, activeOnly, labels [l3], page 1)', 200, () =>
    store.listSandboxes({ userId: `${prefix}-big`, activeOnly: true, labels: ['l3'] }, 1, 100),
  );
  await time('findSandboxes(activeOnly, limit 100)', 200, () => store.findSandboxes({ activeOnly: true }, 100));
}

async function main(url: string | undefined): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-store-bench-'));
  try {
    const locations: [string, StoreLocation][] = [['sqlite (file, WAL)', { kind: 'sqlite', path: join(dir, 'bench.db') }]];
    const scratch = `corral_bench_${Date.now().toString(36)}`;
    const admin = url ? new pg.Client({ connectionString: url }) : undefined;
    if (url && admin) {
      await admin.connect();
      await admin.query(`create database ${scratch}`);
      const fresh = new URL(url);
      fresh.pathname = `/${scratch}`;
      locations.push(['postgres', { kind: 'postgres', url: fresh.toString() }]);
    }
    try {
      for (const [kind, location] of locations) {
        const store = await openStore(location);
        try {
          await bench(kind, store, 'bench');
        } finally {
          await store.close();
        }
      }
    } finally {
      if (admin) {
        await admin.query(`drop database if exists ${scratch} with (force)`);
        await admin.end();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  await main(process.argv[2]);
}

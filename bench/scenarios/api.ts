import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { openStore } from '../../packages/server/src/store/open-store.js';
import type { SandboxRecord } from '../../packages/server/src/records/sandbox-records.js';
import { sandboxFixture } from '../../packages/server/src/testing/sandbox-fixture.js';
import { AuthService } from '../../packages/server/src/services/auth-service.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';
import { serveCorral } from '../lib/serve.js';

/**
 * `npm run bench -- api [--duration 10] [--connections 32] [--sandboxes 10000] [--no-postgres]`
 *
 * Throughput and latency of `GET /api/v1/sandbox/{id}` and `GET /api/v1/sandbox?per_page=100`
 * with 10,000 stored sandboxes, on SQLite and on PostgreSQL, against a `corral serve` child
 * process. Baseline: `GET /healthz` on the same server (the framework and socket, without auth
 * or the store), so the ratio shows what the API adds.
 */

const KEY = 'corral_bench_admin_key_0000000000000000000000000';

interface LoadResult extends Baseline {
  requests_per_sec: number;
  requests: number;
  non_2xx: number;
}

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

function sandbox(i: number, userId: string): SandboxRecord {
  const t = new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
  return sandboxFixture({
    id: `bench${String(i).padStart(19, '0')}`,
    userId,
    name: `bench-${i}`,
    startCommand: 'tail -f /dev/null',
    status: i % 10 === 0 ? 'TERMINATED' : 'PENDING',
    environmentVars: { A: 'b' },
    secrets: { S: 'v' },
    labels: ['bench', `shard-${i % 16}`],
    createdAt: t,
    updatedAt: t,
  });
}

async function seed(location: Parameters<typeof openStore>[0], count: number): Promise<string[]> {
  const store = await openStore(location);
  try {
    const auth = new AuthService(store);
    await auth.bootstrap(KEY);
    const admin = await store.getUserByName('admin');
    if (!admin) throw new Error('no admin user after bootstrap');
    const ids: string[] = [];
    for (let start = 0; start < count; start += 100) {
      const batch = Array.from({ length: Math.min(100, count - start) }, (_, j) => sandbox(start + j, admin.id));
      await Promise.all(batch.map((s) => store.insertSandbox(s)));
      ids.push(...batch.map((s) => s.id));
    }
    return ids;
  } finally {
    await store.close();
  }
}

async function load(name: string, url: string, paths: () => string, duration: number, connections: number): Promise<LoadResult> {
  const latencies: number[] = [];
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance: autocannon.Instance = autocannon(
      {
        url,
        connections,
        duration,
        headers: { authorization: `Bearer ${KEY}` },
        requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: paths() }) }],
      },
      (error, finished) => (error ? reject(error) : resolve(finished)),
    );
    instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTime: number) => latencies.push(responseTime));
  });
  return {
    name,
    ...percentiles(latencies),
    requests_per_sec: Math.round(result.requests.average),
    requests: result.requests.total,
    non_2xx: result.non2xx,
  };
}

function postgresUrl(): string | null {
  if (process.env.CORRAL_BENCH_DATABASE_URL) return process.env.CORRAL_BENCH_DATABASE_URL;
  const script = join(import.meta.dirname, '..', '..', 'scripts', 'ensure-postgres.sh');
  // The URL arrives in a file: a server started by the script must not hold our stdout pipe open.
  const outFile = join(mkdtempSync(join(tmpdir(), 'corral-bench-pg-url-')), 'url');
  const out = openSync(outFile, 'w');
  const result = spawnSync('bash', [script], { stdio: ['ignore', out, 'inherit'], env: { ...process.env, CORRAL_PG_DATABASE: 'corral_bench' } });
  closeSync(out);
  if (result.status !== 0) return null;
  return readFileSync(outFile, 'utf8').trim().split('\n').pop() ?? null;
}

async function resetPostgres(url: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public;');
  } finally {
    await client.end();
  }
}

/** Runs the scenario. */
export async function run(args: string[]): Promise<void> {
  const duration = option(args, 'duration', 10);
  const connections = option(args, 'connections', 32);
  const count = option(args, 'sandboxes', 10_000);
  const stores: Array<{ kind: string; env: NodeJS.ProcessEnv; location: Parameters<typeof openStore>[0]; cleanup: () => void }> = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-bench-api-'));
  stores.push({ kind: 'sqlite', env: {}, location: { kind: 'sqlite', path: join(dataDir, 'corral.db') }, cleanup: () => rmSync(dataDir, { recursive: true, force: true }) });
  if (!args.includes('--no-postgres')) {
    const url = postgresUrl();
    if (url) {
      await resetPostgres(url);
      stores.push({ kind: 'postgres', env: { DATABASE_URL: url }, location: { kind: 'postgres', url }, cleanup: () => undefined });
    }
  }
  const byStore: Record<string, unknown> = {};
  let primary: { get: LoadResult; list: LoadResult; health: LoadResult } | undefined;
  for (const store of stores) {
    const ids = await seed(store.location, count);
    const served = await serveCorral({
      CORRAL_DATA_DIR: store.kind === 'sqlite' ? dataDir : mkdtempSync(join(tmpdir(), 'corral-bench-pg-')),
      CORRAL_RUNTIME: 'none',
      CORRAL_RATE_LIMITS: 'off',
      CORRAL_BOOTSTRAP_API_KEY: KEY,
      ...store.env,
    });
    try {
      await load('warmup', served.url, () => '/healthz', 2, connections);
      const health = await load('healthz (no auth, no store)', served.url, () => '/healthz', duration, connections);
      const get = await load('GET /sandbox/{id}', served.url, () => `/api/v1/sandbox/${ids[Math.floor(Math.random() * ids.length)]}`, duration, connections);
      const list = await load('GET /sandbox?per_page=100', served.url, () => `/api/v1/sandbox?per_page=100&page=${1 + Math.floor(Math.random() * 10)}`, duration, connections);
      byStore[store.kind] = { get, list, baseline: health };
      console.log(`${store.kind}: GET one ${get.requests_per_sec} req/s (p99 ${get.p99_ms} ms), list 100 ${list.requests_per_sec} req/s (p99 ${list.p99_ms} ms), healthz ${health.requests_per_sec} req/s`);
      primary ??= { get, list, health };
    } finally {
      await served.stop();
      store.cleanup();
    }
  }
  if (!primary) throw new Error('no store was measured');
  report({
    scenario: 'api',
    driver: 'none',
    machine: machine(),
    runs: primary.get.requests,
    corral: { ...primary.get, store: 'sqlite' },
    baselines: [primary.health, primary.list],
    ratio_p50: { [primary.health.name]: Math.round((primary.health.p50_ms / primary.get.p50_ms) * 100) / 100 },
    sandboxes_stored: count,
    connections,
    duration_s: duration,
    stores: byStore,
  });
}

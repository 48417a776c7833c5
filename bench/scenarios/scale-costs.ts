import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { loadConfig } from '../../packages/server/src/config.js';
import type { SandboxRecord } from '../../packages/server/src/records/sandbox-records.js';
import type { RuntimeSandboxState, SandboxRuntime } from '../../packages/server/src/runtime/runtime.js';
import { Reconciler } from '../../packages/server/src/services/reconciler.js';
import { SandboxLifecycle } from '../../packages/server/src/services/sandbox-lifecycle.js';
import { openStore } from '../../packages/server/src/store/open-store.js';
import { benchImage, createExtra, startBenchServer } from '../lib/bench-server.js';
import { BENCH_KEY } from '../lib/corral-client.js';
import { type ApiCounts, type StatementCounts, startApiCountingProxy, startPgCountingProxy } from '../lib/counting-proxies.js';
import { KUBECONFIG, waitForNoSandboxPods } from '../lib/kubernetes-bench.js';
import { machine } from '../lib/results.js';
import { sandboxFixture } from '../../packages/server/src/testing/sandbox-fixture.js';

/**
 * `npm run bench -- scale-costs [--lifecycles 10] [--rows 1000,10000] [--database-url postgres://…]`
 *
 * The per-operation costs docs/scale-out.md extrapolates from, on the kubernetes driver with a
 * PostgreSQL store (default `CORRAL_TEST_DATABASE_URL`; a scratch database is created and dropped):
 *
 * - a `corral serve` child whose store connects through a PostgreSQL proxy that counts executed
 *   statements by kind, and whose driver talks to the API server through an HTTP proxy that counts
 *   calls (`<verb> <resource>`), watch bytes/events and exec websocket bytes
 *   (lib/counting-proxies.ts); its reconciler's interval is set out of the way (600 s) so the
 *   lifecycle counts are the lifecycle's own;
 * - `--lifecycles` sandboxes in sequence, each: create (held) → RUNNING, `POST /auth` + one gateway
 *   exec of `true`, ten more gateway execs with one token (+ 1.1 s for the activity flush), delete →
 *   its Pod gone; counts per phase, averaged;
 * - the server idle for 10 s (what runs without any request);
 * - the reconciler's pass over N running rows of one instance (in this process, a runtime double
 *   listing N running containers, the same statement-counting proxy): the first (full) pass, an
 *   incremental pass with nothing changed, and wall time of each.
 *
 * Writes bench/results/scale-costs-kubernetes.json.
 */
export async function run(args: string[]): Promise<void> {
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const lifecycles = Number(opt('lifecycles') ?? 10);
  const rowCounts = (opt('rows') ?? '1000,10000').split(',').map(Number);
  const adminUrl = opt('database-url') ?? process.env.CORRAL_TEST_DATABASE_URL;
  if (!adminUrl) throw new Error('scale-costs needs PostgreSQL: --database-url or CORRAL_TEST_DATABASE_URL');
  const admin = new URL(adminUrl);
  const database = `corral_scale_${randomBytes(4).toString('hex')}`;
  const adminClient = new pg.Client({ connectionString: adminUrl });
  await adminClient.connect();
  await adminClient.query(`CREATE DATABASE ${database}`);
  const pgProxy = await startPgCountingProxy(admin.hostname, Number(admin.port || 5432));
  const proxiedUrl = new URL(adminUrl);
  proxiedUrl.host = `127.0.0.1:${pgProxy.port}`;
  proxiedUrl.pathname = `/${database}`;

  // The driver's API traffic goes through the counting proxy, authenticated with the cluster's
  // static admin token (docs/kubernetes-test-cluster.md, "Using it").
  const pki = join(KUBECONFIG, '..', 'pki');
  const apiProxy = await startApiCountingProxy(new URL('https://127.0.0.1:6443'), readFileSync(join(pki, 'ca.crt')));
  const dir = mkdtempSync(join(tmpdir(), 'corral-scale-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      // Plain HTTP to the proxy on loopback; client-node insists on this flag for an http:// server.
      clusters: [{ name: 'proxy', cluster: { server: apiProxy.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'admin', user: { token: readFileSync(join(pki, 'admin.token'), 'utf8').trim() } }],
      contexts: [{ name: 'proxy', context: { cluster: 'proxy', user: 'admin' } }],
      'current-context': 'proxy',
    }),
    { mode: 0o600 },
  );

  const results: Record<string, unknown> = { scenario: 'scale-costs', driver: 'kubernetes', machine: '', lifecycles };
  try {
    const server = await startBenchServer('kubernetes', { DATABASE_URL: proxiedUrl.toString(), KUBECONFIG: kubeconfig, CORRAL_RECONCILE_INTERVAL_MS: '600000' });
    try {
      const image = benchImage('kubernetes');
      const extra = createExtra('kubernetes');
      // Warm-up: helper ConfigMap, JIT, connection pool.
      const warm = await server.client.create(image, extra);
      await server.client.waitRunning(warm);
      await server.client.exec(warm, 'true');
      await server.client.delete(warm);
      await waitForNoSandboxPods(server.instanceId);

      pgProxy.reset();
      apiProxy.reset();
      await new Promise((r) => setTimeout(r, 10_000));
      results.idle_10s = { statements: pgProxy.counts(), api: apiProxy.counts() };

      const phases = ['create_to_running', 'auth_and_exec', 'exec_x10_same_token', 'delete_to_gone'] as const;
      const sums = Object.fromEntries(phases.map((p) => [p, { statements: {} as StatementCounts, api: { calls: {}, watchBytes: 0, watchEvents: 0, execBytes: 0 } as ApiCounts, ms: 0 }]));
      const add = (phase: (typeof phases)[number], started: number): void => {
        const into = sums[phase] as { statements: StatementCounts; api: ApiCounts; ms: number };
        for (const [k, v] of Object.entries(pgProxy.counts())) into.statements[k] = (into.statements[k] ?? 0) + v;
        const api = apiProxy.counts();
        for (const [k, v] of Object.entries(api.calls)) into.api.calls[k] = (into.api.calls[k] ?? 0) + v;
        into.api.watchBytes += api.watchBytes;
        into.api.watchEvents += api.watchEvents;
        into.api.execBytes += api.execBytes;
        into.ms += performance.now() - started;
        pgProxy.reset();
        apiProxy.reset();
      };
      for (let i = 0; i < lifecycles; i++) {
        pgProxy.reset();
        apiProxy.reset();
        let t0 = performance.now();
        const id = await server.client.create(image, extra);
        await server.client.waitRunning(id, 20);
        add('create_to_running', t0);
        t0 = performance.now();
        const code = await server.client.exec(id, 'true');
        if (code !== 0) throw new Error(`exec exit ${code}`);
        add('auth_and_exec', t0);
        // Ten more gateway execs with one token, as a client that keeps its token does.
        const authAnswer = await fetch(`${server.served.url}/api/v1/sandbox/${id}/auth`, { method: 'POST', headers: { authorization: `Bearer ${BENCH_KEY}` } });
        const auth = (await authAnswer.json()) as { token: string; gateway_url: string; user_ns: string; job_id: string };
        pgProxy.reset();
        apiProxy.reset();
        t0 = performance.now();
        for (let n = 0; n < 10; n++) {
          const answer = await fetch(`${auth.gateway_url}/${auth.user_ns}/${auth.job_id}/exec`, {
            method: 'POST',
            headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ command: 'true', sandbox_id: id, timeout: 60 }),
          });
          if (answer.status !== 200) throw new Error(`gateway exec: HTTP ${answer.status}`);
          await answer.arrayBuffer();
        }
        // The activity tracker writes once per second: let it.
        await new Promise((r) => setTimeout(r, 1100));
        add('exec_x10_same_token', t0);
        t0 = performance.now();
        await server.client.delete(id);
        await waitForNoSandboxPods(server.instanceId);
        // The watch's delete event may trail the Pod's disappearance from a list by a moment.
        await new Promise((r) => setTimeout(r, 300));
        add('delete_to_gone', t0);
      }
      const perLifecycle: Record<string, unknown> = {};
      for (const phase of phases) {
        const s = sums[phase] as { statements: StatementCounts; api: ApiCounts; ms: number };
        const avg = (n: number): number => Math.round((n / lifecycles) * 100) / 100;
        perLifecycle[phase] = {
          ms: Math.round(s.ms / lifecycles),
          statements: Object.fromEntries(Object.entries(s.statements).map(([k, v]) => [k, avg(v)])),
          api_calls: Object.fromEntries(Object.entries(s.api.calls).map(([k, v]) => [k, avg(v)])),
          watch_bytes: avg(s.api.watchBytes),
          watch_events: avg(s.api.watchEvents),
          exec_websocket_bytes: avg(s.api.execBytes),
        };
      }
      results.per_lifecycle = perLifecycle;
    } finally {
      await server.stop();
    }

    // The reconciler's pass over N running rows (this process; the same counting proxy).
    const store = await openStore({ kind: 'postgres', url: proxiedUrl.toString() });
    const reconciler: Record<string, unknown> = {};
    try {
      for (const rows of rowCounts) {
        const instance = `recon-${rows}-${randomBytes(3).toString('hex')}`;
        const containers: RuntimeSandboxState[] = [];
        const now = new Date().toISOString();
        for (let i = 0; i < rows; i++) {
          const id = `${instance}-${String(i).padStart(6, '0')}`;
          await store.insertSandbox(runningRecord(id, instance, now));
          containers.push({ sandboxId: id, runtimeId: `c-${id}`, running: true, exitCode: null, oomKilled: false });
        }
        const runtime = {
          name: 'double',
          list: async () => containers,
          remove: async () => undefined,
          onEvent: () => () => undefined,
          capabilities: () => ({ gpuCount: 0, gpuTypes: [], egressPolicy: false }),
        } as unknown as SandboxRuntime;
        const dataDir = mkdtempSync(join(tmpdir(), 'corral-scale-recon-'));
        const config = loadConfig({ env: {}, overrides: { runtime: 'none', dataDir, instanceId: instance, logLevel: 'silent' } });
        const log = pino({ level: 'silent' });
        const lifecycle = new SandboxLifecycle(store, runtime, config, log);
        const passes: Record<string, unknown> = {};
        const timed = async (reconciler: Reconciler): Promise<{ ms: number; statements: StatementCounts }> => {
          pgProxy.reset();
          const t0 = performance.now();
          await reconciler.reconcile();
          return { ms: Math.round(performance.now() - t0), statements: pgProxy.counts() };
        };
        const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
        // The default reconciler: a full read on its first pass (and every 60 s), between them only
        // rows changed since the last pass or whose deadline is due.
        const steady = new Reconciler(store, lifecycle, 600_000, log);
        passes.first_full = await timed(steady);
        const incremental = [];
        for (let i = 0; i < 7; i++) incremental.push(await timed(steady));
        passes.incremental = { median_ms: median(incremental.map((p) => p.ms)), all_ms: incremental.map((p) => p.ms), statements: incremental[0]?.statements };
        // Every pass a full read (what each 60 s resync costs).
        const full = new Reconciler(store, lifecycle, 600_000, log, { fullResyncMs: 0 });
        const fulls = [];
        for (let i = 0; i < 7; i++) fulls.push(await timed(full));
        passes.full_resync = { median_ms: median(fulls.map((p) => p.ms)), all_ms: fulls.map((p) => p.ms), statements: fulls[0]?.statements };
        lifecycle.close?.();
        rmSync(dataDir, { recursive: true, force: true });
        reconciler[`rows_${rows}`] = passes;
      }
    } finally {
      await store.close();
    }
    results.reconciler_pass = reconciler;
    results.machine = machine();
    const file = join(new URL('../results/', import.meta.url).pathname, 'scale-costs-kubernetes.json');
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    console.log(JSON.stringify(results, null, 2));
    console.log(`written to bench/results/scale-costs-kubernetes.json`);
  } finally {
    await pgProxy.close();
    await apiProxy.close();
    rmSync(dir, { recursive: true, force: true });
    await adminClient.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    await adminClient.end();
  }
  // Kept-alive upstream sockets of the proxies (Node's global agent) would hold the process open.
  process.exit(0);
}

/** A RUNNING sandbox row of `instance`, started now. */
function runningRecord(id: string, instance: string, now: string): SandboxRecord {
  return sandboxFixture({
    id,
    userId: 'scale-user',
    name: 'scale',
    dockerImage: 'busybox',
    cpuCores: 0.1,
    memoryGb: 0.25,
    diskSizeGb: 1,
    egressAppliedGeneration: 1,
    status: 'RUNNING',
    timeoutMinutes: 600,
    environmentVars: {},
    createdAt: now,
    updatedAt: now,
    startedAt: now,
    runtimeDriver: 'kubernetes',
    runtimeId: `c-${id}`,
    runtimeOwner: instance,
  });
}

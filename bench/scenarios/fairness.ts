import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { timeRuns } from '../lib/baselines.js';
import { BENCH_IMAGE, driverOption, resultsFile, startBenchServer } from '../lib/bench-server.js';
import { BENCH_KEY } from '../lib/corral-client.js';
import { machine, percentiles, report } from '../lib/results.js';

const FLOOD = fileURLToPath(new URL('./fairness-flood.ts', import.meta.url));

interface GatewayAuth {
  base: string;
  token: string;
}

/**
 * Fairness of the data plane: tenant B runs sequential `true` execs alone (baseline), then again
 * while tenant A floods from another process — many concurrent long execs, execs with 16 MiB of
 * output, and open streaming sessions — across its own sandboxes. Reports B's p50/p99 both ways;
 * the target is B's p99 under the flood ≤ 2× its p99 alone.
 *
 * `npm run bench -- fairness [--driver oci|docker] [--runs 300] [--long-execs 512] [--big-outputs 16] [--sessions 128] [--a-sandboxes 4]`
 */
export async function run(args: string[]): Promise<void> {
  const opt = (name: string, fallback: number): number => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const runs = opt('runs', 300);
  const longExecs = opt('long-execs', 512);
  const bigOutputs = opt('big-outputs', 16);
  const sessions = opt('sessions', 128);
  const aSandboxes = opt('a-sandboxes', 4);
  const driver = driverOption(args);
  const server = await startBenchServer(driver);
  const api = async <T>(key: string, method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${server.served.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${text}`);
    return JSON.parse(text) as T;
  };
  const sandbox = async (key: string): Promise<GatewayAuth> => {
    const { id } = await api<{ id: string }>(key, 'POST', '/sandbox', { name: 'fair', docker_image: BENCH_IMAGE, start_command: 'tail -f /dev/null' });
    for (;;) {
      const s = await api<{ status: string }>(key, 'GET', `/sandbox/${id}`);
      if (s.status === 'RUNNING') break;
      if (['ERROR', 'TERMINATED', 'TIMEOUT'].includes(s.status)) throw new Error(`${id} ${s.status}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const auth = await api<{ token: string; gateway_url: string; user_ns: string; job_id: string }>(key, 'POST', `/sandbox/${id}/auth`);
    return { base: `${auth.gateway_url}/${auth.user_ns}/${auth.job_id}`, token: auth.token };
  };
  let flood: ReturnType<typeof fork> | undefined;
  try {
    const userB = await api<{ id: string }>(BENCH_KEY, 'POST', '/users', { name: 'tenant-b' });
    const keyB = (await api<{ key: string }>(BENCH_KEY, 'POST', '/keys', { user_id: userB.id, name: 'bench' })).key;
    const a = await Promise.all(Array.from({ length: aSandboxes }, () => sandbox(BENCH_KEY)));
    const b = await sandbox(keyB);
    const bExec = async (): Promise<void> => {
      const response = await fetch(`${b.base}/exec`, {
        method: 'POST',
        headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ command: 'true', timeout: 60 }),
      });
      const result = (await response.json()) as { exit_code?: number };
      if (response.status !== 200 || result.exit_code !== 0) throw new Error(`exec: HTTP ${response.status}`);
    };
    await timeRuns(30, 1, bExec);
    const alone = await timeRuns(runs, 1, bExec);

    let floodStats = { requests: 0, failures: 0 };
    flood = fork(FLOOD, [], {
      execArgv: ['--conditions=development', '--import', 'tsx'],
      env: { ...process.env, FLOOD_CONFIG: JSON.stringify({ targets: a, longExecs, bigOutputs, sessions }) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    flood.on('message', (m) => (floodStats = m as typeof floodStats));
    // Let the flood fill A's slots and queues before measuring.
    await new Promise((r) => setTimeout(r, 5000));
    const startStats = { ...floodStats };
    const started = performance.now();
    const underFlood = await timeRuns(runs, 1, bExec);
    const seconds = (performance.now() - started) / 1000;
    const floodRate = Math.round((floodStats.requests - startStats.requests) / seconds);

    const mine = percentiles(underFlood.ms);
    const base = percentiles(alone.ms);
    const ratioP99 = Math.round((mine.p99_ms / base.p99_ms) * 100) / 100;
    report(
      {
        scenario: 'fairness',
        driver,
        machine: machine(),
        runs: underFlood.ms.length,
        corral: { ...mine, name: "tenant B's sequential `true` exec while tenant A floods", errors: underFlood.errors.length },
        baselines: [{ name: "tenant B's sequential `true` exec alone", ...base, errors: alone.errors.length }],
        ratio_p50: { "tenant B's sequential `true` exec alone": Math.round((base.p50_ms / mine.p50_ms) * 100) / 100 },
        p99_under_flood_over_alone: ratioP99,
        target: "B's p99 under the flood <= 2x its p99 alone",
        met: ratioP99 <= 2,
        flood: { a_sandboxes: aSandboxes, long_execs: longExecs, big_outputs: bigOutputs, sessions, a_requests_per_sec: floodRate, a_failures: floodStats.failures },
      },
      resultsFile('fairness', driver),
    );
    console.log(`B p99 under flood / alone: ${ratioP99} (target <= 2); A completed ${floodRate} req/s during the measurement`);
  } finally {
    flood?.kill('SIGKILL');
    await server.stop();
  }
}

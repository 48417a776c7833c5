import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { timeRuns } from '../lib/baselines.js';
import { BENCH_IMAGE, driverOption, resultsFile, startBenchServer } from '../lib/bench-server.js';
import { BENCH_KEY } from '../lib/corral-client.js';
import { machine, percentiles, report } from '../lib/results.js';

const FLOOD = fileURLToPath(new URL('./fairness-flood.ts', import.meta.url));

interface GatewayAuth {
  id: string;
  base: string;
  token: string;
}

/**
 * Fairness of the data plane: tenant B runs sequential `true` execs alone (baseline, before and
 * after the flood), and while tenant A floods from another process — many concurrent long execs, execs with 16 MiB of
 * output, and open streaming sessions — across its own sandboxes. Reports B's p50/p99 both ways;
 * the target is B's p99 under the flood ≤ 2× its p99 alone.
 *
 * `npm run bench -- fairness [--driver oci|docker] [--runs 1000] [--long-execs 512] [--big-outputs 16] [--sessions 128] [--a-sandboxes 4]
 *  [--max-execs-per-user N] [--max-sessions-per-user N] [--env NAME=VALUE]…` (these set the server's
 * CORRAL_MAX_EXECS_PER_USER / CORRAL_MAX_SESSIONS_PER_USER, e.g. to 1024 to see the flood without
 * per-user caps, or any other setting).
 */
export async function run(args: string[]): Promise<void> {
  const opt = (name: string, fallback: number): number => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const runs = opt('runs', 1000);
  const longExecs = opt('long-execs', 512);
  const bigOutputs = opt('big-outputs', 16);
  const sessions = opt('sessions', 128);
  const aSandboxes = opt('a-sandboxes', 4);
  const driver = driverOption(args);
  const env: NodeJS.ProcessEnv = {};
  if (args.includes('--max-execs-per-user')) env.CORRAL_MAX_EXECS_PER_USER = String(opt('max-execs-per-user', 128));
  if (args.includes('--max-sessions-per-user')) env.CORRAL_MAX_SESSIONS_PER_USER = String(opt('max-sessions-per-user', 128));
  // Any other server setting: --env NAME=VALUE (repeatable).
  args.forEach((arg, i) => {
    const setting = args[i + 1];
    if (arg === '--env' && setting?.includes('=')) env[setting.slice(0, setting.indexOf('='))] = setting.slice(setting.indexOf('=') + 1);
  });
  const server = await startBenchServer(driver, env);
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
    return { id, base: `${auth.gateway_url}/${auth.user_ns}/${auth.job_id}`, token: auth.token };
  };
  let flood: ReturnType<typeof fork> | undefined;
  /** Sandboxes to delete before the server stops (sandboxes outlive their server by design). */
  const made: Array<{ key: string; id: string }> = [];
  try {
    const userB = await api<{ id: string }>(BENCH_KEY, 'POST', '/users', { name: 'tenant-b' });
    const keyB = (await api<{ key: string }>(BENCH_KEY, 'POST', '/keys', { user_id: userB.id, name: 'bench' })).key;
    const a = await Promise.all(Array.from({ length: aSandboxes }, () => sandbox(BENCH_KEY)));
    for (const s of a) made.push({ key: BENCH_KEY, id: s.id });
    const b = await sandbox(keyB);
    made.push({ key: keyB, id: b.id });
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
    // B alone, before and after the flood (the machine is shared: this spans its drift).
    const aloneBefore = await timeRuns(runs, 1, bExec);

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
    const floodFailures = floodStats.failures;
    flood.kill('SIGKILL');
    flood = undefined;
    // Let A's execs and sessions end before measuring B alone again.
    await new Promise((r) => setTimeout(r, 15_000));
    const aloneAfter = await timeRuns(runs, 1, bExec);
    const alone = aloneBefore;

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
        baselines: [{ name: "tenant B's sequential `true` exec alone (before the flood)", ...base, errors: alone.errors.length }],
        ratio_p50: { "tenant B's sequential `true` exec alone (before the flood)": Math.round((base.p50_ms / mine.p50_ms) * 100) / 100 },
        p99_under_flood_over_alone: ratioP99,
        target: "B's p99 under the flood <= 2x its p99 alone",
        met: ratioP99 <= 2,
        flood: { a_sandboxes: aSandboxes, long_execs: longExecs, big_outputs: bigOutputs, sessions, a_requests_per_sec: floodRate, a_failures: floodFailures },
        server_env: env,
        alone_after_flood: { ...percentiles(aloneAfter.ms), errors: aloneAfter.errors.length },
      },
      resultsFile('fairness', driver),
    );
    console.log(`B p99 under flood / alone: ${ratioP99} (target <= 2); A completed ${floodRate} req/s during the measurement`);
  } finally {
    flood?.kill('SIGKILL');
    for (const { key, id } of made) await api(key, 'DELETE', `/sandbox/${id}`).catch((error: unknown) => console.error(String(error)));
    await server.stop();
  }
}

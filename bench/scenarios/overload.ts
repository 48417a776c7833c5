import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_PYTHON_IMAGE, type BenchServer, driverOption, resultsFile, startBenchServer } from '../lib/bench-server.js';
import { machine, percentiles, report, type Percentiles } from '../lib/results.js';

/**
 * `npm run bench -- overload [--driver oci|docker] [--sandboxes 16] [--concurrency 1,4,32] [--runs 64] [--client-timeout 20] [--open-admission] [--hog 2]`
 *
 * Issue 19's RL code-reward workload against a server with its default admission and gateway
 * bounds: `sandboxes` sandboxes (1 CPU, 1 GB, the offline python image) at once, each: upload a
 * bundle of test files, extract it, then `runs` short `python3` test runs with up to C at once
 * (each under a 60 s command timeout and a `client-timeout` s client deadline, as an RL harness
 * sets), then delete. One step per C. While a step runs, a prober times `GET /sandbox/{id}` and
 * `GET /healthz` every 100 ms (the control plane under data-plane load).
 *
 * Each step reports goodput (successful test runs per second of the step's wall time), exec
 * p50/p99 (client side, waiting included), management p99, errors and the sandboxes left behind.
 * Baseline in the same run: the host's ideal, the same test run with `cores` sandboxes at C = 1
 * (one command per core at a time). `--open-admission` lifts the CPU and memory admission limits
 * to show what admission itself buys. `--hog S` replaces each test run by S seconds of a shell busy
 * loop (pure CPU, no I/O): the host saturated from inside sandboxes, to read the management p99 under.
 */
export async function run(args: string[]): Promise<void> {
  const driver = driverOption(args);
  const opt = (name: string, fallback: string): string => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? (args[i + 1] ?? fallback) : fallback;
  };
  const sandboxes = Number(opt('sandboxes', '16'));
  const steps = opt('concurrency', '1,4,32').split(',').map(Number);
  const runs = Number(opt('runs', '64'));
  const clientTimeoutMs = Number(opt('client-timeout', '20')) * 1000;
  const cores = cpus().length;
  const env = args.includes('--open-admission') ? { CORRAL_OVERCOMMIT_CPU: '1000', CORRAL_OVERCOMMIT_MEMORY: '100' } : {};
  const hogIndex = args.indexOf('--hog');
  const hogSeconds = hogIndex >= 0 ? Number(args[hogIndex + 1] ?? '2') : 0;
  const testCommand = (k: number): string =>
    hogSeconds > 0 ? `timeout ${hogSeconds} sh -c 'while :; do :; done'; exit 0` : `python3 /tmp/tests/test_${k % 8}.py`;
  const bundle = makeBundle();
  const server = await startBenchServer(driver, env, true);
  try {
    // Warm the image (first create unpacks it) outside any step.
    await workload(server, bundle.data, testCommand, 1, 1, 2, clientTimeoutMs);
    const ideal = summary(await workload(server, bundle.data, testCommand, cores, 1, runs, clientTimeoutMs));
    console.log(JSON.stringify({ step: 'ideal', sandboxes: cores, concurrency: 1, ...ideal }));
    const results: Array<ReturnType<typeof summary> & { concurrency: number; oversubscription: number }> = [];
    for (const c of steps) {
      const step = await workload(server, bundle.data, testCommand, sandboxes, c, runs, clientTimeoutMs);
      const entry = { concurrency: c, oversubscription: (sandboxes * c) / cores, ...summary(step) };
      results.push(entry);
      console.log(JSON.stringify(entry));
    }
    const best = Math.max(ideal.goodput_per_s, ...results.map((r) => r.goodput_per_s));
    const at8 = results.find((r) => r.oversubscription >= 8);
    report(
      {
        scenario: 'overload',
        driver,
        machine: machine(),
        runs: results.reduce((n, r) => n + r.execs_ok + r.errors, 0),
        corral: { ...(at8?.exec ?? percentiles([])), goodput_per_s: at8?.goodput_per_s ?? null, oversubscription: at8?.oversubscription ?? null },
        baselines: [{ name: `host ideal: ${cores} sandboxes, C = 1`, ...ideal.exec, goodput_per_s: ideal.goodput_per_s }],
        ratio_p50: {},
        goodput_at_8x_of_best: at8 ? round(at8.goodput_per_s / best) : null,
        steps: results,
        workload: hogSeconds > 0 ? `${hogSeconds} s shell busy loops` : 'python3 test runs',
        admission: args.includes('--open-admission') ? 'open (CORRAL_OVERCOMMIT_CPU=1000, CORRAL_OVERCOMMIT_MEMORY=100)' : 'server defaults',
      },
      resultsFile(`overload${args.includes('--open-admission') ? '-open' : ''}${hogSeconds > 0 ? '-hog' : ''}`, driver),
    );
  } finally {
    await server.stop();
    rmSync(bundle.dir, { recursive: true, force: true });
  }
}

const round = (n: number): number => Math.round(n * 100) / 100;

/** A gzipped tarball of eight small test files, like an RL task's bundle. */
function makeBundle(): { dir: string; data: Uint8Array } {
  const dir = mkdtempSync(join(tmpdir(), 'corral-overload-'));
  mkdirSync(join(dir, 'tests'));
  for (let i = 0; i < 8; i++) {
    writeFileSync(
      join(dir, 'tests', `test_${i}.py`),
      `import json, re\n\ndef solve(n):\n    return sum(i * i for i in range(n))\n\nassert solve(${20_000 + i}) == sum(i * i for i in range(${20_000 + i}))\nprint(json.dumps({"test": ${i}, "ok": bool(re.match("ok", "ok"))}))\n`,
    );
  }
  execFileSync('tar', ['-czf', join(dir, 'bundle.tgz'), '-C', dir, 'tests']);
  return { dir, data: readFileSync(join(dir, 'bundle.tgz')) };
}

interface StepResult {
  wallMs: number;
  execMs: number[];
  errors: string[];
  goodput: number;
  mgmtMs: number[];
  healthMs: number[];
  left: number;
}

function summary(step: StepResult): {
  goodput_per_s: number;
  execs_ok: number;
  exec: Percentiles;
  management: Percentiles;
  healthz: Percentiles;
  errors: number;
  first_errors: string[];
  left_behind: number;
  wall_s: number;
} {
  return {
    goodput_per_s: round(step.goodput),
    execs_ok: step.execMs.length,
    exec: percentiles(step.execMs),
    management: percentiles(step.mgmtMs),
    healthz: percentiles(step.healthMs),
    errors: step.errors.length,
    first_errors: [...new Set(step.errors)].slice(0, 3),
    left_behind: step.left,
    wall_s: round(step.wallMs / 1000),
  };
}

/** One step: `count` sandboxes at once, each uploading, extracting and running `runs` tests with `c` at once. */
async function workload(
  server: BenchServer,
  bundle: Uint8Array,
  testCommand: (k: number) => string,
  count: number, c: number, runs: number, clientTimeoutMs: number): Promise<StepResult> {
  const client = server.client;
  const execMs: number[] = [];
  const errors: string[] = [];
  const mgmtMs: number[] = [];
  const healthMs: number[] = [];
  const ids: string[] = [];
  let probing = true;
  const prober = (async () => {
    while (probing) {
      const id = ids[Math.floor(Math.random() * ids.length)];
      await Promise.all([
        id ? client.timeGet(`/api/v1/sandbox/${id}`).then((ms) => mgmtMs.push(ms), (e: Error) => errors.push(`management: ${e.message}`)) : undefined,
        client.timeGet('/healthz').then((ms) => healthMs.push(ms), (e: Error) => errors.push(`healthz: ${e.message}`)),
      ]);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const started = performance.now();
  const one = async (): Promise<void> => {
    let id: string | undefined;
    try {
      id = await client.create(BENCH_PYTHON_IMAGE, { cpu_cores: 1, memory_gb: 1, disk_size_gb: 1 });
      ids.push(id);
      await client.waitRunningBatched(id, 250, 600_000);
      await client.upload(id, '/tmp/bundle.tgz', bundle);
      const extracted = await client.execTimed(id, 'cd /tmp && tar -xzf bundle.tgz && ls tests | wc -l', 60, 60_000);
      if (extracted.exitCode !== 0) throw new Error(`extract: exit ${extracted.exitCode}`);
      let next = 0;
      const sandboxId = id;
      const worker = async (): Promise<void> => {
        while (next < runs) {
          const k = next++;
          const t0 = performance.now();
          try {
            const r = await client.execTimed(sandboxId, testCommand(k), 60, clientTimeoutMs);
            if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}`);
            execMs.push(performance.now() - t0);
          } catch (error) {
            errors.push(`exec: ${(error as Error).name === 'TimeoutError' ? 'client timeout' : (error as Error).message.replace(/sb[-\w]+|[a-z0-9]{20,}/g, '<id>')}`);
          }
        }
      };
      await Promise.all(Array.from({ length: c }, worker));
    } catch (error) {
      errors.push(`sandbox: ${(error as Error).message.replace(/[a-z0-9]{20,}/g, '<id>')}`);
    } finally {
      if (id) await client.delete(id).catch((e: Error) => errors.push(`delete: ${e.message}`));
    }
  };
  await Promise.all(Array.from({ length: count }, one));
  const wallMs = performance.now() - started;
  probing = false;
  await prober;
  // Left behind: a sandbox of this step whose row is not in a terminal status after its delete.
  const statuses = await Promise.all(ids.map((id) => client.get(id).then((s) => String(s.status), () => 'gone')));
  const left = statuses.filter((s) => !['TERMINATED', 'ERROR', 'TIMEOUT', 'gone'].includes(s)).length;
  return { wallMs, execMs, errors, goodput: execMs.length / (wallMs / 1000), mgmtMs, healthMs, left };
}

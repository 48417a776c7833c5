import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DockerRuntime } from '../../packages/server/src/runtime/docker/docker-runtime.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';
import { resultsFile, runtimeDriverOption } from '../lib/bench-server.js';
import { serveCorral } from '../lib/serve.js';
import { runKubernetes } from './exec-kubernetes.js';
import { runOci } from './exec-oci.js';

/**
 * `npm run bench -- exec [--driver docker|oci|kubernetes] [--runs 300] [--concurrent-runs 960] [--cli-runs 100] [--image corral-test/busybox:latest]`
 *
 * Round trip of `true` through the gateway (`POST …/exec`, what the Prime SDK sends) against one
 * Docker sandbox of a `corral serve` child process: one client in sequence, then 32 clients at
 * once (latency and throughput). Baselines measured in the same run against the same container:
 * `docker exec <container> true` through the Docker CLI, and the Docker driver's own
 * `runtime.exec` called in this process (what the gateway adds on top: HTTP, token and store
 * checks, JSON).
 */

const KEY = 'corral_bench_admin_key_0000000000000000000000000';
const CONCURRENCY = 32;
const execFileAsync = promisify(execFile);

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

function stringOption(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] ?? fallback) : fallback;
}

interface Measured extends Baseline {
  runs: number;
  concurrency: number;
  execs_per_sec: number;
  errors: number;
}

/** Runs `once` `total` times with `concurrency` workers; latencies in ms. */
async function measure(name: string, total: number, concurrency: number, once: () => Promise<boolean>): Promise<Measured> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        next++;
        const t0 = performance.now();
        const ok = await once().catch(() => false);
        latencies.push(performance.now() - t0);
        if (!ok) errors++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const result = { name, ...percentiles(latencies), runs: total, concurrency, execs_per_sec: Math.round((total / elapsed) * 10) / 10, errors };
  console.log(`${name}: p50 ${result.p50_ms} ms, p95 ${result.p95_ms} ms, p99 ${result.p99_ms} ms, ${result.execs_per_sec} exec/s, ${errors} errors`);
  return result;
}

async function api(url: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/**
 * Runs the scenario: `--driver oci` measures the oci driver (scenarios/exec-oci.ts), `--driver
 * kubernetes` the kubernetes driver (scenarios/exec-kubernetes.ts), else Docker.
 */
export async function run(args: string[]): Promise<void> {
  const driver = runtimeDriverOption(args);
  if (driver === 'kubernetes') return runKubernetes(args);
  if (driver === 'oci' && args.includes('--driver')) return runOci(args);
  const runs = option(args, 'runs', 300);
  const concurrentRuns = option(args, 'concurrent-runs', 30 * CONCURRENCY);
  const cliRuns = option(args, 'cli-runs', 100);
  const image = stringOption(args, 'image', 'corral-test/busybox:latest');
  const instance = `bench-exec-${randomBytes(4).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-bench-exec-'));
  const served = await serveCorral({
    CORRAL_DATA_DIR: dataDir,
    CORRAL_RUNTIME: 'docker',
    CORRAL_INSTANCE_ID: instance,
    CORRAL_RATE_LIMITS: 'off',
    CORRAL_BOOTSTRAP_API_KEY: KEY,
  });
  const runtime = new DockerRuntime({ instance, diskDir: join(dataDir, 'docker-disks') });
  let sandboxId: string | undefined;
  try {
    const created = await api(served.url, 'POST', '/api/v1/sandbox', { name: 'bench', docker_image: image, start_command: 'tail -f /dev/null', cpu_cores: 1, memory_gb: 1 });
    sandboxId = String(created.id);
    for (let i = 0; ; i++) {
      const s = await api(served.url, 'GET', `/api/v1/sandbox/${sandboxId}`);
      if (s.status === 'RUNNING') break;
      if (i > 600) throw new Error(`sandbox still ${String(s.status)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const auth = await api(served.url, 'POST', `/api/v1/sandbox/${sandboxId}/auth`);
    const execUrl = `${String(auth.gateway_url)}/${String(auth.user_ns)}/${String(auth.job_id)}/exec`;
    const headers = { authorization: `Bearer ${String(auth.token)}`, 'content-type': 'application/json' };
    const payload = JSON.stringify({ command: 'true', working_dir: null, env: {}, sandbox_id: sandboxId, timeout: 60 });
    const gateway = async (): Promise<boolean> => {
      const res = await fetch(execUrl, { method: 'POST', headers, body: payload });
      const body = (await res.json()) as { exit_code?: number };
      return res.status === 200 && body.exit_code === 0;
    };
    const [container] = await runtime.list();
    if (!container) throw new Error('the sandbox container is not visible to the driver');
    const driver = async (): Promise<boolean> => {
      const proc = await runtime.exec(container.runtimeId, { argv: ['/bin/sh', '-c', 'true'] });
      proc.stdout.resume();
      proc.stderr.resume();
      return (await proc.wait()).exitCode === 0;
    };
    const cli = async (): Promise<boolean> => {
      await execFileAsync('docker', ['exec', container.runtimeId, '/bin/sh', '-c', 'true']);
      return true;
    };

    await measure('warmup', 20, 4, gateway);
    await measure('warmup driver', 20, 4, driver);
    const corral1 = await measure('gateway exec, 1 client', runs, 1, gateway);
    const corral32 = await measure(`gateway exec, ${CONCURRENCY} clients`, concurrentRuns, CONCURRENCY, gateway);
    const driver1 = await measure('driver runtime.exec, 1 caller', runs, 1, driver);
    const driver32 = await measure(`driver runtime.exec, ${CONCURRENCY} callers`, concurrentRuns, CONCURRENCY, driver);
    const cli1 = await measure('docker exec CLI, 1 caller', cliRuns, 1, cli);
    const cli32 = await measure(`docker exec CLI, ${CONCURRENCY} callers`, Math.max(cliRuns, 2 * CONCURRENCY), CONCURRENCY, cli);

    const ratio = (b: Measured): number => Math.round((b.p50_ms / corral1.p50_ms) * 100) / 100;
    report({
      scenario: 'exec',
      driver: 'docker',
      machine: machine(),
      runs,
      corral: { ...corral1 },
      baselines: [corral32, driver1, driver32, cli1, cli32],
      ratio_p50: { [driver1.name]: ratio(driver1), [cli1.name]: ratio(cli1) },
      ratio_p50_concurrent: {
        [driver32.name]: Math.round((driver32.p50_ms / corral32.p50_ms) * 100) / 100,
        [cli32.name]: Math.round((cli32.p50_ms / corral32.p50_ms) * 100) / 100,
      },
      image,
      command: 'true',
    }, resultsFile('exec', 'docker'));
  } finally {
    if (sandboxId) await api(served.url, 'DELETE', `/api/v1/sandbox/${sandboxId}`).catch(() => undefined);
    for (const s of await runtime.list().catch(() => [])) await runtime.remove(s.runtimeId).catch(() => undefined);
    await runtime.close();
    await served.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

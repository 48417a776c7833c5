import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { timeRuns } from '../lib/baselines.js';
import { BENCH_IMAGE, resultsFile, startBenchServer } from '../lib/bench-server.js';
import { gatewayTrueExec } from '../lib/gateway-true-exec.js';
import { httpxStylePost } from '../lib/prime-sdk-client.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';

const run = promisify(execFile);

/**
 * The exec scenario on the oci driver: gateway round trip of `true` (1 client, then 32 at once)
 * against one sandbox, beside `runc exec <container> /bin/sh -c true` through the runtime's own CLI
 * on the same container, in the same run; and the exec exactly as the Prime SDK's sync
 * `execute_command` sends it (`lib/prime-sdk-client.ts`: a new connection per call, httpx's
 * headers and JSON, head and body in two writes), 1 client.
 */
export async function runOci(args: string[]): Promise<void> {
  const opt = (name: string, fallback: number): number => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const runs = opt('runs', 300);
  const concurrentRuns = opt('concurrent-runs', 960);
  const binary = process.env.CORRAL_OCI_RUNTIME ?? 'runc';
  const server = await startBenchServer('oci');
  try {
    const id = await server.client.create(BENCH_IMAGE);
    await server.client.waitRunning(id);
    const exec = await gatewayTrueExec(server.served.url, id);
    const gateway = exec.run;
    const sdkBody = JSON.stringify({ command: 'true', working_dir: null, env: {}, sandbox_id: id, timeout: 300 });
    const sdkShaped = async (): Promise<void> => {
      const answer = await httpxStylePost(new URL(exec.url), exec.token, sdkBody);
      if (answer.status !== 200 || (JSON.parse(answer.body) as { exit_code?: number }).exit_code !== 0) throw new Error(`exec: HTTP ${answer.status}`);
    };
    const root = join(server.dataDir, 'oci', 'instances', server.instanceId, 'runc');
    const cli = async (): Promise<void> => {
      await run(binary, ['--root', root, 'exec', `corral-${id}`, '/bin/sh', '-c', 'true']);
    };
    await timeRuns(30, 4, gateway);
    const started1 = performance.now();
    const one = await timeRuns(runs, 1, gateway);
    const rate1 = one.ms.length / ((performance.now() - started1) / 1000);
    await timeRuns(10, 1, sdkShaped);
    const sdk1 = await timeRuns(runs, 1, sdkShaped);
    const started32 = performance.now();
    const many = await timeRuns(concurrentRuns, 32, gateway);
    const rate32 = many.ms.length / ((performance.now() - started32) / 1000);
    const cli1 = await timeRuns(Math.min(runs, 100), 1, cli);
    const cli32Start = performance.now();
    const cli32 = await timeRuns(Math.min(concurrentRuns, 320), 32, cli);
    const cliRate32 = cli32.ms.length / ((performance.now() - cli32Start) / 1000);
    const mine = percentiles(one.ms);
    const baselines: Baseline[] = [
      { name: 'Prime SDK-shaped exec (new connection per call), 1 client', ...percentiles(sdk1.ms), errors: sdk1.errors.length },
      { name: 'gateway exec, 32 clients', ...percentiles(many.ms), execs_per_sec: Math.round(rate32), errors: many.errors.length },
      { name: `${binary} exec CLI, 1 caller`, ...percentiles(cli1.ms) },
      { name: `${binary} exec CLI, 32 callers`, ...percentiles(cli32.ms), execs_per_sec: Math.round(cliRate32) },
    ];
    report(
      {
        scenario: 'exec',
        driver: 'oci',
        machine: machine(),
        runs: one.ms.length,
        corral: { ...mine, name: 'gateway exec, 1 client', execs_per_sec: Math.round(rate1), errors: one.errors.length, oci_runtime: binary },
        baselines,
        ratio_p50: {
          [`${binary} exec CLI, 1 caller`]: Math.round(((baselines[2]?.p50_ms ?? 0) / mine.p50_ms) * 100) / 100,
          'Prime SDK-shaped exec, 1 client': Math.round(((baselines[0]?.p50_ms ?? 0) / mine.p50_ms) * 100) / 100,
        },
        throughput_32_clients_per_sec: Math.round(rate32),
      },
      resultsFile('exec', 'oci'),
    );
    await server.client.delete(id);
  } finally {
    await server.stop();
  }
}

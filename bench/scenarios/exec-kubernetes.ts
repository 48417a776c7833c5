import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { timeRuns } from '../lib/baselines.js';
import { benchImage, createExtra, resultsFile, startBenchServer } from '../lib/bench-server.js';
import { gatewayTrueExec } from '../lib/gateway-true-exec.js';
import { BENCH_NAMESPACE, KUBECONFIG, kubectlExecTrue, K8S_BENCH_IMAGE } from '../lib/kubernetes-bench.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';
import { KubernetesRuntime } from '../../packages/server/src/runtime/kubernetes/kubernetes-runtime.js';

/**
 * The exec scenario on the kubernetes driver: gateway round trip of `true` (1 client, then 32 at
 * once) against one sandbox of a `corral serve` child, beside, on the same Pod in the same run:
 * the driver's own `runtime.exec` called in this process (a second `KubernetesRuntime` of the
 * server's instance: what the gateway adds on top), and `kubectl exec <pod> -- true` (1 and 32
 * callers). What this measures is the exec path of the driver on this branch (see docs/benchmarks.md).
 */
export async function runKubernetes(args: string[]): Promise<void> {
  const opt = (name: string, fallback: number): number => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const runs = opt('runs', 200);
  const concurrentRuns = opt('concurrent-runs', 320);
  const cliRuns = opt('cli-runs', 50);
  const server = await startBenchServer('kubernetes');
  const runtime = new KubernetesRuntime({
    instance: server.instanceId,
    namespace: BENCH_NAMESPACE,
    kubeconfigPath: KUBECONFIG,
    binDir: join(server.dataDir, 'bin'),
    insecureRegistries: ['127.0.0.1:5000'],
  });
  try {
    const id = await server.client.create(benchImage('kubernetes'), createExtra('kubernetes'));
    await server.client.waitRunning(id);
    await runtime.init();
    const pod = (await runtime.list()).find((s) => s.sandboxId === id)?.runtimeId;
    if (!pod) throw new Error(`the sandbox ${id} has no Pod the driver sees`);
    const exec = await gatewayTrueExec(server.served.url, id);
    const gateway = exec.run;
    const driver = async (): Promise<void> => {
      const proc = await runtime.exec(pod, { argv: ['/bin/sh', '-c', 'true'] });
      proc.stdout.resume();
      proc.stderr.resume();
      const { exitCode } = await proc.wait();
      if (exitCode !== 0) throw new Error(`exit ${exitCode}`);
    };
    const cli = async (): Promise<void> => {
      await kubectlExecTrue(pod);
    };
    await timeRuns(20, 4, gateway);
    await timeRuns(10, 2, driver);
    const started1 = performance.now();
    const one = await timeRuns(runs, 1, gateway);
    const rate1 = one.ms.length / ((performance.now() - started1) / 1000);
    const started32 = performance.now();
    const many = await timeRuns(concurrentRuns, 32, gateway);
    const rate32 = many.ms.length / ((performance.now() - started32) / 1000);
    const driver1 = await timeRuns(runs, 1, driver);
    const driver32Start = performance.now();
    const driver32 = await timeRuns(concurrentRuns, 32, driver);
    const driverRate32 = driver32.ms.length / ((performance.now() - driver32Start) / 1000);
    const cli1 = await timeRuns(cliRuns, 1, cli);
    const cli32Start = performance.now();
    const cli32 = await timeRuns(Math.max(cliRuns, 64), 32, cli);
    const cliRate32 = cli32.ms.length / ((performance.now() - cli32Start) / 1000);
    const mine = percentiles(one.ms);
    const baselines: Baseline[] = [
      { name: 'gateway exec, 32 clients', ...percentiles(many.ms), execs_per_sec: Math.round(rate32), errors: many.errors.length, first_errors: many.errors.slice(0, 3) },
      { name: 'driver runtime.exec, 1 caller', ...percentiles(driver1.ms), errors: driver1.errors.length },
      { name: 'driver runtime.exec, 32 callers', ...percentiles(driver32.ms), execs_per_sec: Math.round(driverRate32), errors: driver32.errors.length },
      { name: 'kubectl exec true, 1 caller', ...percentiles(cli1.ms), errors: cli1.errors.length },
      { name: 'kubectl exec true, 32 callers', ...percentiles(cli32.ms), execs_per_sec: Math.round(cliRate32), errors: cli32.errors.length },
    ];
    const ratio = (b: Baseline | undefined): number => Math.round(((b?.p50_ms ?? 0) / mine.p50_ms) * 100) / 100;
    report(
      {
        scenario: 'exec',
        driver: 'kubernetes',
        machine: machine(),
        runs: one.ms.length,
        corral: { ...mine, name: 'gateway exec, 1 client', execs_per_sec: Math.round(rate1), errors: one.errors.length, first_errors: one.errors.slice(0, 3) },
        baselines,
        ratio_p50: { 'driver runtime.exec, 1 caller': ratio(baselines[1]), 'kubectl exec true, 1 caller': ratio(baselines[3]) },
        throughput_32_clients_per_sec: Math.round(rate32),
        image: K8S_BENCH_IMAGE,
        pod,
        run_id: randomBytes(4).toString('hex'),
      },
      resultsFile('exec', 'kubernetes'),
    );
    await server.client.delete(id);
  } finally {
    await runtime.close();
    await server.stop();
  }
}

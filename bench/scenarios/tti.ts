import { type BaselineOp, dockerRunExec, runcRunTrue, timeRuns } from '../lib/baselines.js';
import { benchImage, createExtra, resultsFile, runtimeDriverOption, startBenchServer } from '../lib/bench-server.js';
import { K8S_SANDBOX_RESOURCES, kubectlRunExec } from '../lib/kubernetes-bench.js';
import { PrimeSdkClient } from '../lib/prime-sdk-client.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';

/**
 * `npm run bench -- tti [--driver oci|docker|kubernetes] [--runs 100] [--default-admission]`
 *
 * Time to interactive, sequentially: `POST /sandbox` → `status:batchGet` every 5 ms until RUNNING →
 * `POST /auth` → gateway exec of `true`, against a `corral serve` child. Deletes are not timed.
 * In the same run, the Prime SDK's own schedule (`lib/prime-sdk-client.ts`: `create`,
 * `wait_for_creation` with its 25 ms batch window and 1.0 s × 1.5 jittered backoff, then
 * `execute_command("true")`), with the held create and, for `--sdk-no-hold-runs` runs (default
 * 10), without it (`X-Corral-Create-Wait: 0`, the old behaviour).
 * Baselines in the same run: `docker run -d` + `docker exec true` through the CLI, and (oci)
 * `runc run` of `true` on a plain bundle of the same rootfs. On kubernetes (the cluster of
 * scripts/ensure-kubernetes.sh, namespace `corral-bench`, sandboxes of 0.1 CPU and 0.25 GB): `kubectl
 * run` of the same image with the same requests and limits until Ready, then a first `kubectl exec
 * … true`, instead of the Docker baseline.
 */
export async function run(args: string[]): Promise<void> {
  const driver = runtimeDriverOption(args);
  const runsAt = args.indexOf('--runs');
  const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 100;
  const image = benchImage(driver);
  const extra = createExtra(driver);
  const sdkResources = driver === 'kubernetes' ? { resources: { ...K8S_SANDBOX_RESOURCES } } : {};
  // The timed sandboxes stay until the end of the run: with the default admission (on 2 cores, six
  // 1-CPU sandboxes at a time) the seventh would wait in the queue for good. `--default-admission` keeps it.
  const admission = args.includes('--default-admission') ? {} : { CORRAL_OVERCOMMIT_CPU: '1000', CORRAL_OVERCOMMIT_MEMORY: '100' };
  const server = await startBenchServer(driver, admission);
  const baselineOps: BaselineOp[] = driver === 'kubernetes' ? [kubectlRunExec(undefined, true)] : [dockerRunExec(image)];
  // On kubernetes each sandbox is deleted once timed (untimed), so the runs fit the 2-core node.
  const deleteNow = driver === 'kubernetes';
  if (driver === 'oci') baselineOps.push(await runcRunTrue(server.rootfsTar));
  try {
    // Warm up: the first sandbox pays for pools, caches and JIT.
    for (let i = 0; i < 3; i += 1) {
      const id = await server.client.create(image, extra);
      await server.client.waitRunning(id);
      await server.client.exec(id, 'true');
      await server.client.delete(id);
    }
    const created: string[] = [];
    const corral = await timeRuns(runs, 1, async () => {
      const id = await server.client.create(image, extra);
      if (!deleteNow) created.push(id);
      await server.client.waitRunning(id);
      const code = await server.client.exec(id, 'true');
      if (code !== 0) throw new Error(`exit ${code}`);
      return deleteNow ? () => server.client.delete(id) : undefined;
    });
    for (const id of created) await server.client.delete(id);
    const sdkTimed = async (client: PrimeSdkClient, n: number): Promise<{ ms: number[]; errors: string[]; statusRequests: number }> => {
      const ids: string[] = [];
      const measured = await timeRuns(n, 1, async () => {
        const { id } = await client.create(image);
        if (!deleteNow) ids.push(id);
        await client.waitForCreation(id);
        const code = await client.executeCommand(id, 'true');
        if (code !== 0) throw new Error(`exit ${code}`);
        return deleteNow ? () => client.delete(id) : undefined;
      });
      for (const id of ids) await client.delete(id);
      return { ...measured, statusRequests: client.statusRequests };
    };
    const noHoldAt = args.indexOf('--sdk-no-hold-runs');
    const noHoldRuns = noHoldAt >= 0 ? Number(args[noHoldAt + 1]) : 10;
    const sdk = await sdkTimed(new PrimeSdkClient(server.served.url, sdkResources), runs);
    const sdkNoHold = await sdkTimed(new PrimeSdkClient(server.served.url, { holdHeaders: { 'x-corral-create-wait': '0' }, ...sdkResources }), noHoldRuns);
    const sdkFigures = (m: { ms: number[]; errors: string[]; statusRequests: number }): Record<string, unknown> => ({
      ...percentiles(m.ms),
      max_ms: Math.round(Math.max(...m.ms) * 100) / 100,
      runs: m.ms.length,
      errors: m.errors.length,
      first_errors: m.errors.slice(0, 3),
      status_requests: m.statusRequests,
    });
    const baselines: Baseline[] = [];
    for (const op of baselineOps) {
      const measured = await timeRuns(Math.min(runs, 50), 1, () => op.once());
      await op.cleanup();
      baselines.push({ name: op.name, ...percentiles(measured.ms), runs: measured.ms.length, errors: measured.errors.length });
    }
    const mine = percentiles(corral.ms);
    report(
      {
        scenario: 'tti',
        driver,
        machine: machine(),
        runs: corral.ms.length,
        corral: { ...mine, errors: corral.errors.length, first_errors: corral.errors.slice(0, 3) },
        prime_sdk_schedule: sdkFigures(sdk),
        prime_sdk_schedule_no_hold: sdkFigures(sdkNoHold),
        baselines,
        ratio_p50: Object.fromEntries(baselines.map((b) => [b.name, Math.round((b.p50_ms / mine.p50_ms) * 100) / 100])),
      },
      resultsFile('tti', driver),
    );
  } finally {
    await server.stop();
  }
}

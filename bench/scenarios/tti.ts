import { type BaselineOp, dockerRunExec, runcRunTrue, timeRuns } from '../lib/baselines.js';
import { BENCH_IMAGE, driverOption, resultsFile, startBenchServer } from '../lib/bench-server.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';

/**
 * `npm run bench -- tti [--driver oci|docker] [--runs 100]`
 *
 * Time to interactive, sequentially: `POST /sandbox` → `status:batchGet` every 5 ms until RUNNING →
 * `POST /auth` → gateway exec of `true`, against a `corral serve` child. Deletes are not timed.
 * Baselines in the same run: `docker run -d` + `docker exec true` through the CLI, and (oci)
 * `runc run` of `true` on a plain bundle of the same rootfs.
 */
export async function run(args: string[]): Promise<void> {
  const driver = driverOption(args);
  const runsAt = args.indexOf('--runs');
  const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 100;
  const server = await startBenchServer(driver);
  const baselineOps: BaselineOp[] = [dockerRunExec(BENCH_IMAGE)];
  if (driver === 'oci') baselineOps.push(await runcRunTrue(server.rootfsTar));
  try {
    // Warm up: the first sandbox pays for pools, caches and JIT.
    for (let i = 0; i < 3; i += 1) {
      const id = await server.client.create(BENCH_IMAGE);
      await server.client.waitRunning(id);
      await server.client.exec(id, 'true');
      await server.client.delete(id);
    }
    const created: string[] = [];
    const corral = await timeRuns(runs, 1, async () => {
      const id = await server.client.create(BENCH_IMAGE);
      created.push(id);
      await server.client.waitRunning(id);
      const code = await server.client.exec(id, 'true');
      if (code !== 0) throw new Error(`exit ${code}`);
    });
    for (const id of created) await server.client.delete(id);
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
        baselines,
        ratio_p50: Object.fromEntries(baselines.map((b) => [b.name, Math.round((b.p50_ms / mine.p50_ms) * 100) / 100])),
      },
      resultsFile('tti', driver),
    );
  } finally {
    await server.stop();
  }
}

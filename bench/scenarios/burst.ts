import { dockerRunExec, runcRunTrue, timeRuns, type BaselineOp } from '../lib/baselines.js';
import { BENCH_IMAGE, driverOption, resultsFile, startBenchServer } from '../lib/bench-server.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';

/**
 * `npm run bench -- burst [--driver oci|docker] [--count 100] [--settle <seconds>]`
 *
 * `count` creates at once; each is timed from its `POST /sandbox` to its first successful gateway
 * exec (status polled through one shared `status:batchGet` every 20 ms for all pending sandboxes, as
 * `@corral/sdk`'s batched waits do). Baseline: the same number
 * of `docker run -d` + `docker exec true` (and, for oci, `runc run true`) started at once.
 */
export async function run(args: string[]): Promise<void> {
  const driver = driverOption(args);
  const countAt = args.indexOf('--count');
  const count = countAt >= 0 ? Number(args[countAt + 1]) : 100;
  // Seconds to wait after the warm-up sandbox, so the driver's pools (CORRAL_OCI_POOL_SIZE) fill first.
  const settleAt = args.indexOf('--settle');
  const settleMs = settleAt >= 0 ? Number(args[settleAt + 1]) * 1000 : 0;
  const server = await startBenchServer(driver);
  try {
    const warm = await server.client.create(BENCH_IMAGE);
    await server.client.waitRunning(warm);
    await server.client.delete(warm);
    await new Promise((r) => setTimeout(r, settleMs));
    const created: string[] = [];
    const wallStart = performance.now();
    const corral = await timeRuns(count, count, async () => {
      const id = await server.client.create(BENCH_IMAGE);
      created.push(id);
      await server.client.waitRunningBatched(id, 20);
      const code = await server.client.exec(id, 'true');
      if (code !== 0) throw new Error(`exit ${code}`);
    });
    const wallMs = performance.now() - wallStart;
    await Promise.all(created.map((id) => server.client.delete(id).catch(() => undefined)));
    const ops: BaselineOp[] = [dockerRunExec(BENCH_IMAGE)];
    if (driver === 'oci') ops.push(await runcRunTrue(server.rootfsTar));
    const baselines: Baseline[] = [];
    for (const op of ops) {
      const measured = await timeRuns(count, count, () => op.once());
      await op.cleanup();
      baselines.push({ name: `${count} at once: ${op.name}`, ...percentiles(measured.ms), succeeded: measured.ms.length, errors: measured.errors.length });
    }
    const mine = percentiles(corral.ms);
    report(
      {
        scenario: 'burst',
        driver,
        machine: machine(),
        runs: count,
        corral: { ...mine, succeeded: corral.ms.length, errors: corral.errors.length, first_errors: corral.errors.slice(0, 3), wall_ms: Math.round(wallMs) },
        baselines,
        ratio_p50: Object.fromEntries(baselines.map((b) => [b.name, Math.round((b.p50_ms / mine.p50_ms) * 100) / 100])),
      },
      resultsFile('burst', driver),
    );
  } finally {
    await server.stop();
  }
}

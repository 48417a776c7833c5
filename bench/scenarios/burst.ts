import { loadavg } from 'node:os';
import { dockerRunExec, runcRunTrue, timeRuns, type BaselineOp } from '../lib/baselines.js';
import { benchImage, createExtra, resultsFile, runtimeDriverOption, startBenchServer } from '../lib/bench-server.js';
import { ensureBenchNamespace, K8S_SANDBOX_RESOURCES, kubectlRunExec, waitForNoSandboxPods } from '../lib/kubernetes-bench.js';
import { PrimeSdkClient } from '../lib/prime-sdk-client.js';
import { scrapeHistogram } from '../lib/metrics-scrape.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';

/**
 * `npm run bench -- burst [--driver oci|docker|kubernetes] [--count 100 (kubernetes: 10)] [--settle <seconds>] [--rounds <n>] [--create-wait-ms <ms>]`
 *
 * `count` creates at once; each is timed from its `POST /sandbox` to its first successful gateway
 * exec (status polled through one shared `status:batchGet` every 20 ms for all pending sandboxes, as
 * `@corral/sdk`'s batched waits do). In the same run, the same burst through the Prime SDK's own
 * schedule (`lib/prime-sdk-client.ts`: one client's 25 ms status coalescer and 1.0 s × 1.5 jittered
 * backoff, as `asyncio.gather` over the async SDK's `create` + `wait_for_creation` +
 * `execute_command("true")` does), and the server-side readiness of each burst (`startedAt −
 * createdAt` of every row). Baseline: the same number
 * of `docker run -d` + `docker exec true` (and, for oci, `runc run true`) started at once; on
 * kubernetes, the same number of `kubectl run` + wait Ready + `kubectl exec true` (0.1 CPU, 0.25 GB
 * each, as the sandboxes: the 2-core test node holds about 20 of them).
 *
 * At the end it scrapes the server's `/metrics` and prints `corral_sandbox_startup_seconds` per
 * stage (queued, runtime_create, total): counts and p50/p99 estimated from the buckets.
 *
 * `--rounds n` (default 1) repeats the timed burst n times, `--settle` apart (each round's sandboxes
 * deleted first): later rounds show what the oci driver's warm pool, sized by recent creates
 * (CORRAL_OCI_WARM_POOL_MAX), does for a workload that bursts again, as RL steps do. `corral` is the
 * first round; `rounds` lists every round.
 *
 * The burst measures start latency, so admission (issue 19: at most capacity × CORRAL_OVERCOMMIT_*
 * of reserved CPU and memory, the rest queued) is opened wide for it: 1-CPU creates would otherwise
 * mostly wait in the queue on a small host. `--default-admission` keeps the server's defaults.
 */
export async function run(args: string[]): Promise<void> {
  const driver = runtimeDriverOption(args);
  const countAt = args.indexOf('--count');
  const count = countAt >= 0 ? Number(args[countAt + 1]) : driver === 'kubernetes' ? 10 : 100;
  const image = benchImage(driver);
  const extra = createExtra(driver);
  // Seconds to wait after the warm-up sandbox, so the driver's pools (CORRAL_OCI_POOL_SIZE) fill first.
  const settleAt = args.indexOf('--settle');
  const settleMs = settleAt >= 0 ? Number(args[settleAt + 1]) * 1000 : 0;
  // The server's create hold (CORRAL_CREATE_WAIT_MS); default: the server's own default (3000).
  const holdAt = args.indexOf('--create-wait-ms');
  const roundsAt = args.indexOf('--rounds');
  const rounds = roundsAt >= 0 ? Math.max(1, Number(args[roundsAt + 1])) : 1;
  const admission = args.includes('--default-admission') ? {} : { CORRAL_OVERCOMMIT_CPU: '1000', CORRAL_OVERCOMMIT_MEMORY: '100' };
  if (!args.includes('--default-admission')) console.log('burst: admission opened wide (CORRAL_OVERCOMMIT_CPU=1000, CORRAL_OVERCOMMIT_MEMORY=100); --default-admission keeps the defaults');
  const server = await startBenchServer(driver, { ...admission, ...(holdAt >= 0 ? { CORRAL_CREATE_WAIT_MS: args[holdAt + 1] } : {}) });
  try {
    const warm = await server.client.create(image, extra);
    await server.client.waitRunning(warm);
    await server.client.delete(warm);
    if (driver === 'kubernetes') await waitForNoSandboxPods(server.instanceId);
    await new Promise((r) => setTimeout(r, settleMs));
    const readiness = async (ids: string[]): Promise<number[]> =>
      (await Promise.all(ids.map((id) => server.client.get(id)))).flatMap((s) =>
        typeof s.startedAt === 'string' && typeof s.createdAt === 'string' ? [Date.parse(s.startedAt) - Date.parse(s.createdAt)] : [],
      );
    const burstOnce = async (): Promise<{ corral: Awaited<ReturnType<typeof timeRuns>>; wallMs: number; readiness: number[] }> => {
      const created: string[] = [];
      const wallStart = performance.now();
      const corral = await timeRuns(count, count, async () => {
        const id = await server.client.create(image, extra);
        created.push(id);
        await server.client.waitRunningBatched(id, 20);
        const code = await server.client.exec(id, 'true');
        if (code !== 0) throw new Error(`exit ${code}`);
      });
      const wallMs = performance.now() - wallStart;
      const ready = await readiness(created);
      await Promise.all(created.map((id) => server.client.delete(id).catch(() => undefined)));
      if (driver === 'kubernetes') await waitForNoSandboxPods(server.instanceId);
      await new Promise((r) => setTimeout(r, settleMs));
      return { corral, wallMs, readiness: ready };
    };
    const allRounds: Awaited<ReturnType<typeof burstOnce>>[] = [];
    for (let i = 0; i < rounds; i++) {
      const round = await burstOnce();
      allRounds.push(round);
      const p = percentiles(round.corral.ms);
      console.log(`burst round ${i + 1}/${rounds}: p50 ${Math.round(p.p50_ms)} ms, p99 ${Math.round(p.p99_ms)} ms, ${round.corral.ms.length}/${count} succeeded (load ${loadavg().map((l) => l.toFixed(1)).join('/')})`);
    }
    const [firstRound] = allRounds;
    if (!firstRound) throw new Error('no round ran');
    const { corral, wallMs, readiness: fastReadiness } = firstRound;
    const sdkClient = new PrimeSdkClient(server.served.url, driver === 'kubernetes' ? { resources: { ...K8S_SANDBOX_RESOURCES } } : {});
    const sdkCreated: string[] = [];
    const sdkWallStart = performance.now();
    const sdk = await timeRuns(count, count, async () => {
      const { id } = await sdkClient.create(image);
      sdkCreated.push(id);
      await sdkClient.waitForCreation(id);
      const code = await sdkClient.executeCommand(id, 'true');
      if (code !== 0) throw new Error(`exit ${code}`);
    });
    const sdkWallMs = performance.now() - sdkWallStart;
    const sdkReadiness = await readiness(sdkCreated);
    await Promise.all(sdkCreated.map((id) => sdkClient.delete(id).catch(() => undefined)));
    if (driver === 'kubernetes') await waitForNoSandboxPods(server.instanceId);
    if (driver === 'kubernetes') await ensureBenchNamespace();
    // The server's own view of every start of the run (warm-up, rounds and the SDK burst), per stage.
    const stages = await scrapeHistogram(server.served.url, 'corral_sandbox_startup_seconds');
    for (const s of stages) {
      console.log(`server stage ${s.labels.stage ?? '?'} (${s.labels.driver ?? '?'}): ${s.count} starts, p50 ${s.p50_ms} ms, p99 ${s.p99_ms} ms (from /metrics buckets; load ${loadavg().map((l) => l.toFixed(1)).join('/')})`);
    }
    const ops: BaselineOp[] = driver === 'kubernetes' ? [kubectlRunExec()] : [dockerRunExec(image)];
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
        server_readiness: percentiles(fastReadiness),
        rounds: allRounds.map((r) => ({ ...percentiles(r.corral.ms), succeeded: r.corral.ms.length, errors: r.corral.errors.length, wall_ms: Math.round(r.wallMs) })),
        prime_sdk_schedule: {
          ...percentiles(sdk.ms),
          succeeded: sdk.ms.length,
          errors: sdk.errors.length,
          first_errors: sdk.errors.slice(0, 3),
          wall_ms: Math.round(sdkWallMs),
          status_requests: sdkClient.statusRequests,
          server_readiness: percentiles(sdkReadiness),
          p99_over_server_readiness_p99_ms: Math.round(percentiles(sdk.ms).p99_ms - percentiles(sdkReadiness).p99_ms),
        },
        server_stage_histograms: stages,
        baselines,
        ratio_p50: Object.fromEntries(baselines.map((b) => [b.name, Math.round((b.p50_ms / mine.p50_ms) * 100) / 100])),
      },
      resultsFile('burst', driver),
    );
    const overReadiness = Math.round(percentiles(sdk.ms).p99_ms - percentiles(sdkReadiness).p99_ms);
    console.log(`Prime SDK schedule p99 over its own sandboxes' server readiness p99: ${overReadiness} ms (issue 18 target: ≤ 300), ${sdkClient.statusRequests} status requests`);
  } finally {
    await server.stop();
  }
}

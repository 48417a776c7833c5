import { freemem } from 'node:os';
import { dockerRunExec, timeRuns } from '../lib/baselines.js';
import { BENCH_IMAGE, driverOption, resultsFile, startBenchServer } from '../lib/bench-server.js';
import { machine, percentiles, report } from '../lib/results.js';

/**
 * `npm run bench -- density [--driver oci|docker] [--max 1000] [--step 50]`
 *
 * Adds idle sandboxes `step` at a time (8 created at once) up to `max`. After each step it times 10
 * more creates one by one (create → RUNNING) and 20 gateway execs on random sandboxes. It stops when the step's create p99 or exec p99 passes
 * 1 s, or at `max`. Host memory per idle sandbox = drop in free memory / sandboxes held. Baseline:
 * `docker run -d` + `docker exec` of the first step's size, for scale.
 */
export async function run(args: string[]): Promise<void> {
  const driver = driverOption(args);
  const opt = (name: string, fallback: number): number => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const max = opt('max', 1000);
  const step = opt('step', 50);
  // Density measures how many idle sandboxes fit, so admission (CPU and memory reservations) is opened wide.
  const server = await startBenchServer(driver, { CORRAL_PIDS_LIMIT: '64', CORRAL_OVERCOMMIT_CPU: '1000', CORRAL_OVERCOMMIT_MEMORY: '100' });
  const held: string[] = [];
  const steps: Array<{ sandboxes: number; create_p99_ms: number; exec_p99_ms: number; exec_p50_ms: number; free_mem_mib: number; errors: number; first_error: string | null }> = [];
  const freeAtStart = freemem();
  let lastCreate = percentiles([]);
  try {
    while (held.length < max) {
      const size = Math.min(step, max - held.length);
      const createOne = async (): Promise<void> => {
        const id = await server.client.create(BENCH_IMAGE, { memory_gb: 0.1, cpu_cores: 0.1, disk_size_gb: 0.1 });
        held.push(id);
        await server.client.waitRunning(id, 20, 300_000);
      };
      // Fill at a steady pace (8 at a time), then probe: how long one more create takes at this density.
      const fill = await timeRuns(Math.max(0, size - 10), 8, createOne);
      const creates = await timeRuns(Math.min(10, size), 1, createOne);
      creates.errors.push(...fill.errors);
      lastCreate = percentiles(creates.ms);
      const execs = await timeRuns(20, 4, async () => {
        const id = held[Math.floor(Math.random() * held.length)] as string;
        try {
          await server.client.exec(id, 'true');
        } catch (error) {
          const s = await server.client.get(id).catch((): Record<string, unknown> => ({}));
          throw new Error(`${(error as Error).message}; sandbox: ${JSON.stringify({ status: s.status, errorType: s.errorType, errorMessage: s.errorMessage, terminationReason: s.terminationReason, exitCode: s.exitCode, startedAt: s.startedAt, terminatedAt: s.terminatedAt })}`);
        }
      });
      const execP = percentiles(execs.ms);
      const entry = {
        sandboxes: held.length,
        create_p99_ms: lastCreate.p99_ms,
        exec_p99_ms: execP.p99_ms,
        exec_p50_ms: execP.p50_ms,
        free_mem_mib: Math.round(freemem() / 1024 ** 2),
        errors: creates.errors.length + execs.errors.length,
        first_error: creates.errors[0] ?? execs.errors[0] ?? null,
      };
      steps.push(entry);
      console.log(JSON.stringify(entry));
      if (entry.create_p99_ms > 1000 || entry.exec_p99_ms > 1000 || entry.errors > 0) break;
    }
    const memPerSandboxMiB = Math.round(((freeAtStart - freemem()) / 1024 ** 2 / Math.max(1, held.length)) * 10) / 10;
    const baseOp = dockerRunExec(BENCH_IMAGE);
    const baseline = await timeRuns(step, step, () => baseOp.once());
    await baseOp.cleanup();
    const last = steps[steps.length - 1];
    const within = steps.filter((s) => s.create_p99_ms <= 1000 && s.exec_p99_ms <= 1000 && s.errors === 0);
    report(
      {
        scenario: 'density',
        driver,
        machine: machine(),
        runs: held.length,
        corral: { ...lastCreate, sandboxes_held: held.length, max_within_1s: within[within.length - 1]?.sandboxes ?? 0, exec_p99_ms_at_end: last?.exec_p99_ms ?? null },
        baselines: [{ name: `${step} at once: docker run -d + docker exec (CLI)`, ...percentiles(baseline.ms) }],
        ratio_p50: {},
        memory_per_idle_sandbox_mib: memPerSandboxMiB,
        steps,
      },
      resultsFile('density', driver),
    );
  } finally {
    for (let i = 0; i < held.length; i += 100) {
      await Promise.all(held.slice(i, i + 100).map((id) => server.client.delete(id).catch(() => undefined)));
    }
    await server.stop();
  }
}

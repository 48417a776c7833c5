/**
 * Measures what the warm pool saves inside the driver: `count` creates at once (each timed to its
 * first exec finished), once with every create claiming a warm sandbox and once with the warm pool
 * off (disks and namespaces pooled in both), with the host's CPU time (/proc/stat) each burst used.
 *
 *   node --conditions=development --import tsx packages/server/src/runtime/oci/bench-warm.ts [count] [image]
 *
 * CORRAL_OCI_RUNTIME=crun measures crun. Needs what bench-create.ts needs.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { SandboxSpec } from '../runtime.js';
import { runToEnd } from '../conformance/conformance-suite.js';
import { OciRuntime } from './oci-runtime.js';

const count = Number(process.argv[2] ?? 30);
const image = process.argv[3] ?? '127.0.0.1:5000/corral/busybox:latest';
const repo = new URL('../../../../../', import.meta.url).pathname;
const runtimeBinary = process.env.CORRAL_OCI_RUNTIME ?? 'runc';
const stateDir = join(process.env.CORRAL_CACHE_DIR ?? join(repo, '.cache'), 'oci-bench');

const spec = (): SandboxSpec => ({
  sandboxId: `b${randomBytes(5).toString('hex')}`,
  image,
  startCommand: null,
  env: { SOME: 'value' },
  cpuCores: 1,
  memoryBytes: 256 * 1024 * 1024,
  diskBytes: 1024 * 1024 * 1024,
  pidsLimit: 256,
  networkAccess: true,
  gpuCount: 0,
  gpuType: null,
  workspacePath: '/sandbox-workspace',
});

/**
 * CPU time of this process and of the host launcher with the tools it ran (mount, nsenter, nft, the
 * runtime: its reaped children), in ms: the driver's own work, apart from other load on the host.
 */
async function driverCpuMs(): Promise<number> {
  const own = process.cpuUsage();
  let launcher = 0;
  for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes(`launcher-${process.pid}.sock`)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const [utime, stime, cutime, cstime] = stat.slice(stat.lastIndexOf(')') + 2).split(' ').slice(11, 15).map(Number);
    launcher = ((utime ?? 0) + (stime ?? 0) + (cutime ?? 0) + (cstime ?? 0)) * 10;
  }
  return (own.user + own.system) / 1000 + launcher;
}

/** Host CPU time (all cores, user + nice + system + irq + softirq) in ms, from /proc/stat. */
async function hostCpuMs(): Promise<number> {
  const [, ...fields] = ((await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '').trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq] = fields.map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) * 10;
}

function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

for (const warmPoolMax of [count, 0]) {
  const runtime = new OciRuntime({ instance: `bench-${randomBytes(3).toString('hex')}`, stateDir, runtimeBinary, poolSize: count, warmDiskSizes: [1024 ** 3], warmPoolMax, insecureRegistries: [image.split('/')[0] ?? ''] });
  await runtime.init();
  // Demand: `count` creates of the template (sequential, removed again), then the pools fill.
  for (let i = 0; i < count; i++) await runtime.remove((await runtime.create(spec())).runtimeId);
  for (let i = 0; i < 600 && runtime.warmReady() < warmPoolMax; i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 3000)); // the disk and namespace pools too
  const ready = runtime.warmReady();
  const cpuBefore = await hostCpuMs();
  const driverBefore = await driverCpuMs();
  const started = performance.now();
  const ms = await Promise.all(
    Array.from({ length: count }, async () => {
      const t = performance.now();
      const { runtimeId } = await runtime.create(spec());
      const r = await runToEnd(runtime, runtimeId, { argv: ['true'] });
      if (r.exitCode !== 0) throw new Error(`exec failed: ${JSON.stringify(r)}`);
      return performance.now() - t;
    }),
  );
  const wall = performance.now() - started;
  const cpu = (await hostCpuMs()) - cpuBefore;
  const driver = (await driverCpuMs()) - driverBefore;
  console.log(
    `${runtimeBinary}, warm pool ${warmPoolMax} (${ready} ready): ${count} at once, create → first exec p50 ${pct(ms, 50).toFixed(0)} ms, p99 ${pct(ms, 99).toFixed(0)} ms, wall ${wall.toFixed(0)} ms, host CPU ${cpu} ms (${(cpu / count).toFixed(1)} ms per create), driver and its tools ${driver.toFixed(0)} ms (${(driver / count).toFixed(1)} ms per create; load ${loadavg().map((l) => l.toFixed(1)).join('/')})`,
  );
  for (const s of await runtime.list()) await runtime.remove(s.runtimeId);
  await runtime.close();
}
await rm(join(stateDir, 'instances'), { recursive: true, force: true });

/**
 * Measures the oci driver's create → first exec latency (50 sequential sandboxes by default) and,
 * for comparison, `runc run` of `true` on a bundle over the same image layers.
 *
 *   node --conditions=development --import tsx packages/server/src/runtime/oci/bench-create.ts [count] [image]
 *
 * CORRAL_OCI_RUNTIME=crun measures crun instead of runc (scripts/ensure-oci.sh --crun);
 * CORRAL_OCI_USERNS=off measures sandboxes without a user namespace (default: the driver's auto).
 * Needs root, runc and a C compiler (scripts/ensure-oci.sh) and the image (default: the local registry's
 * busybox, scripts/start-registry.sh).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SandboxSpec } from '../runtime.js';
import { runToEnd } from '../conformance/conformance-suite.js';
import { OciRuntime } from './oci-runtime.js';
import { runTool } from '../run-tool.js';

const count = Number(process.argv[2] ?? 50);
const image = process.argv[3] ?? '127.0.0.1:5000/corral/busybox:latest';
const repo = new URL('../../../../../', import.meta.url).pathname;
const runtimeBinary = process.env.CORRAL_OCI_RUNTIME ?? 'runc';
const stateDir = join(process.env.CORRAL_CACHE_DIR ?? join(repo, '.cache'), 'oci-bench');

function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

function summary(name: string, values: number[]): void {
  console.log(`${name}: p50 ${pct(values, 50).toFixed(1)} ms, p99 ${pct(values, 99).toFixed(1)} ms, min ${Math.min(...values).toFixed(1)} ms, max ${Math.max(...values).toFixed(1)} ms (n=${values.length})`);
}

const userns = process.env.CORRAL_OCI_USERNS === 'off' ? null : undefined;
const runtime = new OciRuntime({ instance: `bench-${randomBytes(3).toString('hex')}`, stateDir, runtimeBinary, userns, insecureRegistries: [image.split('/')[0] ?? ''] });
await runtime.init();
console.log(`user namespace: ${JSON.stringify(runtime.userns)}`);
const spec = (networkAccess: boolean): SandboxSpec => ({
  sandboxId: `b${randomBytes(5).toString('hex')}`,
  image,
  startCommand: null,
  env: {},
  cpuCores: 1,
  memoryBytes: 256 * 1024 * 1024,
  diskBytes: 1024 * 1024 * 1024,
  pidsLimit: 256,
  networkAccess,
  gpuCount: 0,
  gpuType: null,
  workspacePath: '/sandbox-workspace',
});
// Pull once, outside the measurement.
await runtime.remove((await runtime.create(spec(false))).runtimeId);
await new Promise((r) => setTimeout(r, 500)); // let the pools refill

for (const networkAccess of [false, true]) {
  const createMs: number[] = [];
  const firstExecMs: number[] = [];
  const execMs: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const { runtimeId } = await runtime.create(spec(networkAccess));
    const created = performance.now();
    const r = await runToEnd(runtime, runtimeId, { argv: ['true'] });
    const first = performance.now();
    if (r.exitCode !== 0) throw new Error(`exec failed: ${JSON.stringify(r)}`);
    await runToEnd(runtime, runtimeId, { argv: ['true'] });
    execMs.push(performance.now() - first);
    createMs.push(created - started);
    firstExecMs.push(first - started);
    await runtime.remove(runtimeId);
    await new Promise((r) => setTimeout(r, 60)); // the pools refill in the background, as between real requests
  }
  console.log(`${runtimeBinary}, networkAccess=${networkAccess}`);
  summary('  create', createMs);
  summary('  create → first exec done', firstExecMs);
  summary('  exec round trip (true)', execMs);
}
await runtime.close();

// Baseline: `runc run` of `true` on an overlay bundle over the same layers (no disk, netns, seccomp).
const record = await runtime.images.ensure(image);
const dir = join(stateDir, 'baseline');
await rm(dir, { recursive: true, force: true });
for (const d of ['rootfs', 'upper', 'work']) await mkdir(join(dir, d), { recursive: true });
const lower = [...record.layers].reverse().map((l) => runtime.images.layerDir(l)).join(':');
await runTool('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${join(dir, 'upper')},workdir=${join(dir, 'work')}`, join(dir, 'rootfs')]);
try {
  const config = {
    ociVersion: '1.0.2',
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['true'], env: ['PATH=/bin'], cwd: '/' },
    root: { path: 'rootfs' },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }] },
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  const runMs: number[] = [];
  for (let i = 0; i < count; i++) {
    const s = performance.now();
    await runTool(runtimeBinary, ['--root', join(dir, 'state'), 'run', '--bundle', dir, `base-${i}`]);
    runMs.push(performance.now() - s);
  }
  summary(`${runtimeBinary} run true (same layers, plain bundle)`, runMs);
} finally {
  await runTool('umount', [join(dir, 'rootfs')]);
  await rm(dir, { recursive: true, force: true });
}
await rm(join(stateDir, 'instances'), { recursive: true, force: true });

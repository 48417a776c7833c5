import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExecRequest, SandboxRuntime, SandboxSpec } from '../../packages/server/src/runtime/runtime.js';
import { ImageStore } from '../../packages/server/src/runtime/oci-images/image-store.js';
import { OciRuntime } from '../../packages/server/src/runtime/oci/oci-runtime.js';
import { criuCandidates } from '../../packages/server/src/runtime/oci/criu-checkpoint.js';
import { specFixture } from '../../packages/server/src/testing/sandbox-fixture.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const REPO = new URL('../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';

function load(): string {
  return loadavg().map((l) => l.toFixed(1)).join('/');
}

async function sh(runtime: SandboxRuntime, runtimeId: string, script: string): Promise<void> {
  const request: ExecRequest = { argv: ['/bin/sh', '-c', script] };
  const proc = await runtime.exec(runtimeId, request);
  proc.stdout.resume();
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const { exitCode } = await proc.wait();
  if (exitCode !== 0) throw new Error(`${script}: exit ${exitCode}: ${stderr}`);
}

/** A shell line writing `mib` MiB of incompressible, non-zero bytes (no holes) to `path`. */
function writeScript(mib: number, path: string): string {
  return `head -c 1048576 /dev/urandom > /tmp/r && i=0 && while [ $i -lt ${mib} ]; do cat /tmp/r; i=$((i+1)); done > ${path} && rm /tmp/r && sync`;
}

/**
 * An oci driver on the tests' state directory (and its image store) for one part of the scenario,
 * and what removes its sandboxes, checkpoints, their layers and its instance directory.
 */
async function benchRuntime(prefix: string, runtimeBinary: string, poolSize = 4): Promise<{ runtime: OciRuntime; dispose(made: string[], refs: string[]): Promise<void> }> {
  const stateDir = join(CACHE, 'oci-test');
  const instance = `${prefix}-${randomBytes(4).toString('hex')}`;
  const runtime = new OciRuntime({
    instance,
    stateDir,
    images: new ImageStore({ root: join(stateDir, 'images'), insecureRegistries: ['127.0.0.1:5000'] }),
    runtimeBinary,
    criu: criuCandidates(CACHE),
    poolSize,
    warmDiskSizes: [],
    imageGcIntervalMs: 0,
  });
  await runtime.init();
  return {
    runtime,
    async dispose(made, refs) {
      await Promise.all(made.map((id) => runtime.remove(id).catch(() => undefined)));
      for (const ref of refs) await runtime.deleteCheckpoint(ref).catch(() => undefined);
      await runtime.pruneCheckpointLayers().catch(() => undefined);
      await runtime.close();
      await rm(join(stateDir, 'instances', instance), { recursive: true, force: true });
    },
  };
}

/**
 * Filesystem checkpoints on the oci driver, driven through the driver directly: the time of a
 * checkpoint (and of its frozen window) with 10 MiB and with 1 GiB written, and 32 sandboxes
 * forked at once from one checkpoint, each timed from create to its first exec, beside 32 plain
 * creates of the image and, where Docker runs, `docker commit` and 32 `docker run` + `docker exec`
 * of the committed image, in the same run. Then memory checkpoints (runc + CRIU; see
 * {@link memoryCheckpoints}). `--runs N` (default 3) checkpoints per size; `--forks N` (default
 * 32); `--big-mib N` (default 1024); `--memory-mib N` (default 64); `--memory-forks N` (default 8);
 * `--pool N` (default 8, the server's `CORRAL_OCI_POOL_SIZE` default): disks and network namespaces
 * the driver keeps ready; `--settle S` (default 5): seconds before each timed burst, for the pools
 * to refill (they refill only while no create is in flight).
 */
export async function run_(args: string[]): Promise<void> {
  const opt = (name: string, fallback: number): number => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const runs = opt('runs', 3);
  const forks = opt('forks', 32);
  const bigMib = opt('big-mib', 1024);
  const pool = opt('pool', 8);
  const settle = async (): Promise<void> => new Promise((r) => setTimeout(r, opt('settle', 5) * 1000));
  const { runtime, dispose } = await benchRuntime('bench-ckpt', process.env.CORRAL_OCI_RUNTIME ?? 'crun', pool);
  const spec = (overrides: Partial<SandboxSpec> = {}): SandboxSpec =>
    specFixture({ sandboxId: `bench${randomBytes(5).toString('hex')}`, image: IMAGE, diskBytes: Math.max(1024, bigMib * 2 + 256) * MiB, ...overrides });
  const made: string[] = [];
  const refs: string[] = [];
  const create = async (overrides: Partial<SandboxSpec> = {}): Promise<string> => {
    const { runtimeId } = await runtime.create(spec(overrides));
    made.push(runtimeId);
    return runtimeId;
  };
  /** Writes `mib` MiB in a new sandbox, checkpoints it `runs` times (a new file each time): total and frozen ms. */
  const checkpointTimes = async (mib: number): Promise<{ total: number[]; frozen: number[]; bytes: number }> => {
    const total: number[] = [];
    const frozen: number[] = [];
    let bytes = 0;
    for (let i = 0; i < runs; i++) {
      const id = await create();
      await sh(runtime, id, writeScript(mib, '/sandbox-workspace/data'));
      const ref = `bench${randomBytes(6).toString('hex')}`;
      const started = performance.now();
      const taken = await runtime.checkpoint(id, { checkpointId: ref, memory: false });
      total.push(performance.now() - started);
      frozen.push(runtime.checkpoints.lastTimings?.frozenMs ?? Number.NaN);
      bytes = taken.sizeBytes;
      refs.push(ref);
      await runtime.remove(id);
    }
    return { total, frozen, bytes };
  };
  /** `count` creates at once, each timed to its first exec. */
  const burst = async (count: number, overrides: Partial<SandboxSpec>): Promise<number[]> =>
    Promise.all(
      Array.from({ length: count }, async () => {
        const started = performance.now();
        const id = await create(overrides);
        await sh(runtime, id, 'true');
        return performance.now() - started;
      }),
    );
  try {
    const small = await checkpointTimes(10);
    console.log(`checkpoint, 10 MiB written: total ${small.total.map((t) => t.toFixed(0)).join(', ')} ms; frozen ${small.frozen.map((t) => t.toFixed(1)).join(', ')} ms (load ${load()})`);
    const big = await checkpointTimes(bigMib);
    console.log(`checkpoint, ${bigMib} MiB written: total ${big.total.map((t) => t.toFixed(0)).join(', ')} ms; frozen ${big.frozen.map((t) => t.toFixed(1)).join(', ')} ms (load ${load()})`);

    const source = await create();
    await sh(runtime, source, writeScript(10, '/sandbox-workspace/data'));
    const ref = `bench${randomBytes(6).toString('hex')}`;
    await runtime.checkpoint(source, { checkpointId: ref, memory: false });
    refs.push(ref);
    await burst(2, { checkpoint: { ref, memory: false }, diskBytes: 1024 * MiB }); // warm-up: the layer's dentries, the pools
    await settle();
    const forked = await burst(forks, { checkpoint: { ref, memory: false }, diskBytes: 1024 * MiB });
    console.log(`fork ${forks} from one checkpoint to first exec (pools of ${pool}): p50 ${percentiles(forked).p50_ms} ms, p99 ${percentiles(forked).p99_ms} ms (load ${load()})`);
    await Promise.all(made.splice(0).map((id) => runtime.remove(id).catch(() => undefined)));
    await settle();
    const plain = await burst(forks, { diskBytes: 1024 * MiB });
    console.log(`${forks} plain creates to first exec: p50 ${percentiles(plain).p50_ms} ms, p99 ${percentiles(plain).p99_ms} ms (load ${load()})`);
    await Promise.all(made.splice(0).map((id) => runtime.remove(id).catch(() => undefined)));

    const baselines: Baseline[] = [
      { name: `${forks} plain creates at once, to first exec`, ...percentiles(plain) },
      { name: 'checkpoint, 10 MiB written (total)', ...percentiles(small.total), frozen_ms: percentiles(small.frozen), layer_bytes: small.bytes },
      { name: `checkpoint, ${bigMib} MiB written (total)`, ...percentiles(big.total), frozen_ms: percentiles(big.frozen), layer_bytes: big.bytes },
    ];
    const docker = await dockerBaseline(forks).catch((error: unknown) => {
      console.log(`docker baseline skipped: ${(error as Error).message.split('\n')[0]}`);
      return undefined;
    });
    if (docker) {
      console.log(`docker commit (10 MiB written): ${docker.commit.toFixed(0)} ms; ${forks} docker run + exec of it: p50 ${percentiles(docker.runs).p50_ms} ms, p99 ${percentiles(docker.runs).p99_ms} ms (load ${load()})`);
      const commit = Math.round(docker.commit * 100) / 100;
      baselines.push({ name: 'docker commit, 10 MiB written', p50_ms: commit, p95_ms: commit, p99_ms: commit });
      baselines.push({ name: `${forks} docker run -d + docker exec true of the commit, at once`, ...percentiles(docker.runs) });
    }
    const memory = await memoryCheckpoints(opt('memory-mib', 64), opt('memory-forks', 8), runs).catch((error: unknown) => {
      console.log(`memory checkpoints skipped: ${(error as Error).message.split('\n')[0]}`);
      return undefined;
    });
    if (memory) baselines.push(...memory);
    const mine = percentiles(forked);
    report(
      {
        scenario: 'checkpoint',
        driver: 'oci',
        machine: machine(),
        runs: forked.length,
        corral: { ...mine, name: `fork ${forks} at once from one checkpoint, to first exec`, pool_size: pool },
        baselines,
        ratio_p50: Object.fromEntries(baselines.filter((b) => b.name.includes(`${forks}`)).map((b) => [b.name, Math.round((b.p50_ms / mine.p50_ms) * 100) / 100])),
      },
      'checkpoint-oci',
    );
  } finally {
    await dispose(made, refs);
  }
}

/**
 * Memory checkpoints (runc + CRIU, whatever runtime the filesystem part used): a sandbox whose
 * background shell holds `mib` MiB in memory (and one holding only a counter) is checkpointed with
 * its processes `runs` times, then restored one at a time and `forks` at once, each timed from
 * create to its first exec. Needs runc and the CRIU `scripts/ensure-criu.sh` builds.
 */
async function memoryCheckpoints(mib: number, forks: number, runs: number): Promise<Baseline[]> {
  const { runtime, dispose } = await benchRuntime('bench-mem', 'runc');
  const made: string[] = [];
  const refs: string[] = [];
  const spec = (overrides: Partial<SandboxSpec> = {}): SandboxSpec =>
    specFixture({ sandboxId: `benchm${randomBytes(5).toString('hex')}`, image: IMAGE, memoryBytes: (mib * 3 + 256) * MiB, diskBytes: 1024 * MiB, ...overrides });
  const create = async (overrides: Partial<SandboxSpec> = {}): Promise<string> => {
    const { runtimeId } = await runtime.create(spec(overrides));
    made.push(runtimeId);
    return runtimeId;
  };
  try {
    if (!runtime.capabilities().memoryCheckpoint) throw new Error(runtime.capabilities().memoryCheckpointUnavailable ?? 'no memory checkpoints');
    /** A source whose background shell holds `hold` MiB (a string of that many bytes) and counts. */
    const source = async (hold: number): Promise<string> => {
      const id = await create();
      // Inside the single-quoted script: a string of `hold` MiB the shell keeps.
      const fill = hold > 0 ? `x=$(head -c ${hold * MiB} /dev/zero | tr "\\0" a); ` : '';
      await sh(runtime, id, `sh -c '${fill}i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' >/dev/null 2>&1 & while ! test -s /tmp/count; do sleep 0.05; done`);
      return id;
    };
    const capture = async (id: string): Promise<{ ms: number; frozen: number; bytes: number; ref: string }> => {
      const ref = `benchm${randomBytes(6).toString('hex')}`;
      const started = performance.now();
      const taken = await runtime.checkpoint(id, { checkpointId: ref, memory: true });
      refs.push(ref);
      return { ms: performance.now() - started, frozen: runtime.checkpoints.lastTimings?.frozenMs ?? Number.NaN, bytes: taken.sizeBytes, ref };
    };
    const toFirstExec = async (ref: string): Promise<number> => {
      const started = performance.now();
      const id = await create({ checkpoint: { ref, memory: true } });
      await sh(runtime, id, 'true');
      return performance.now() - started;
    };
    const out: Baseline[] = [];
    for (const hold of [0, mib]) {
      const id = await source(hold);
      const taken: { ms: number; frozen: number; bytes: number; ref: string }[] = [];
      for (let i = 0; i < runs; i++) taken.push(await capture(id));
      const last = taken.at(-1)!;
      const one: number[] = [];
      for (let i = 0; i < runs; i++) one.push(await toFirstExec(last.ref));
      const many = await Promise.all(Array.from({ length: forks }, () => toFirstExec(last.ref)));
      const label = hold > 0 ? `a shell holding ${hold} MiB` : 'a counting shell';
      console.log(
        `memory checkpoint of ${label}: ${taken.map((t) => t.ms.toFixed(0)).join(', ')} ms (frozen ${taken.map((t) => t.frozen.toFixed(0)).join(', ')} ms), ` +
          `${(last.bytes / MiB).toFixed(1)} MiB stored; restore to first exec ${one.map((t) => t.toFixed(0)).join(', ')} ms; ` +
          `${forks} at once p50 ${percentiles(many).p50_ms} ms, p99 ${percentiles(many).p99_ms} ms (load ${load()})`,
      );
      out.push({ name: `memory checkpoint of ${label} (total)`, ...percentiles(taken.map((t) => t.ms)), frozen_ms: percentiles(taken.map((t) => t.frozen)), stored_bytes: last.bytes });
      out.push({ name: `memory restore of ${label}, to first exec, one at a time`, ...percentiles(one) });
      out.push({ name: `memory restore of ${label}, ${forks} at once, to first exec`, ...percentiles(many) });
      await Promise.all(made.splice(0).map((m) => runtime.remove(m).catch(() => undefined)));
    }
    return out;
  } finally {
    await dispose(made, refs);
  }
}

/** `docker commit` of a container with 10 MiB written, then `forks` concurrent `docker run -d` + `docker exec true` of the commit. */
async function dockerBaseline(forks: number): Promise<{ commit: number; runs: number[] }> {
  const tag = `corral-bench-ckpt:${randomBytes(4).toString('hex')}`;
  const names: string[] = [];
  const name = `corral-bench-${randomBytes(6).toString('hex')}`;
  names.push(name);
  try {
    await run('docker', ['run', '-d', '--name', name, '--network', 'none', IMAGE, 'sleep', '3600']);
    await run('docker', ['exec', name, 'sh', '-c', writeScript(10, '/data')]);
    const started = performance.now();
    await run('docker', ['commit', name, tag]);
    const commit = performance.now() - started;
    const runs = await Promise.all(
      Array.from({ length: forks }, async () => {
        const fork = `corral-bench-${randomBytes(6).toString('hex')}`;
        names.push(fork);
        const t0 = performance.now();
        await run('docker', ['run', '-d', '--name', fork, '--network', 'none', tag, 'sleep', '3600']);
        await run('docker', ['exec', fork, 'true']);
        return performance.now() - t0;
      }),
    );
    return { commit, runs };
  } finally {
    await run('docker', ['rm', '-f', ...names]).catch(() => undefined);
    await run('docker', ['rmi', tag]).catch(() => undefined);
  }
}

export { run_ as run };

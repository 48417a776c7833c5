import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A baseline: one timed operation, and cleanup for everything it made. `once` may return an
 * untimed cleanup of what it made, which {@link timeRuns} runs after timing it.
 */
export interface BaselineOp {
  name: string;
  once(): Promise<void | (() => Promise<unknown>)>;
  cleanup(): Promise<void>;
}

/** `docker run -d --network none IMAGE` + `docker exec <id> true` through the Docker CLI. */
export function dockerRunExec(image: string): BaselineOp {
  const made: string[] = [];
  return {
    name: 'docker run -d + docker exec true (CLI)',
    async once() {
      const name = `corral-bench-${randomBytes(6).toString('hex')}`;
      made.push(name);
      await run('docker', ['run', '-d', '--name', name, '--network', 'none', image, 'sleep', '3600']);
      await run('docker', ['exec', name, 'true']);
    },
    async cleanup() {
      for (let i = 0; i < made.length; i += 50) {
        await run('docker', ['rm', '-f', ...made.slice(i, i + 50)]).catch(() => undefined);
      }
    },
  };
}

/**
 * `runc run` of `true` on a plain bundle of the same rootfs (no overlay, no network, no cgroup
 * limits beyond runc's defaults): the floor any runc-based driver builds on.
 */
export async function runcRunTrue(rootfsTar: string, binary = 'runc'): Promise<BaselineOp> {
  const bundle = mkdtempSync(join(tmpdir(), 'corral-bench-bundle-'));
  const rootfs = join(bundle, 'rootfs');
  mkdirSync(rootfs);
  await run('tar', ['-xf', rootfsTar, '-C', rootfs]);
  await run(binary, ['spec'], { cwd: bundle });
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { terminal: boolean; args: string[] };
    root: { readonly: boolean };
  };
  config.process.terminal = false;
  config.process.args = ['/bin/true'];
  config.root.readonly = true;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  return {
    name: `${binary} run true (plain bundle)`,
    async once() {
      await run(binary, ['run', '--bundle', bundle, `corral-bench-${randomBytes(6).toString('hex')}`]);
    },
    async cleanup() {
      rmSync(bundle, { recursive: true, force: true });
    },
  };
}

/**
 * Runs `op` `total` times with `concurrency` workers and returns each duration in ms. When `op`
 * resolves to a function, that function runs after the duration is taken (untimed cleanup).
 */
export async function timeRuns(total: number, concurrency: number, op: () => Promise<void | (() => Promise<unknown>)>): Promise<{ ms: number[]; errors: string[] }> {
  const ms: number[] = [];
  const errors: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        next++;
        const t0 = performance.now();
        try {
          const after = await op();
          ms.push(performance.now() - t0);
          if (typeof after === 'function') await after();
        } catch (error) {
          errors.push(error instanceof Error ? error.message : String(error));
        }
      }
    }),
  );
  return { ms, errors };
}

/** The `docker commit` + `docker run` baseline of checkpoints and forks (see {@link dockerCommitRun}). */
export interface DockerCommitBaseline {
  /** `docker commit` (paused, the CLI's default) of a running container that wrote `writtenBytes`; each commit's image is removed untimed. */
  commit: BaselineOp;
  /** `docker run -d --network none` of one committed image + `docker exec true`: a fork to its first exec. */
  fork: BaselineOp;
  /** Removes the source container, the committed image and every fork. */
  cleanup(): Promise<void>;
}

/**
 * The same-run baseline for checkpoint and fork figures, through the Docker CLI: a container of
 * `image` (with `sh`, `head` and /dev/urandom) writes `writtenBytes` of random data to
 * /corral-bench/data, then `commit` times `docker commit` of it and `fork` times starting a
 * container from one commit of it to its first exec.
 */
export async function dockerCommitRun(image: string, writtenBytes: number): Promise<DockerCommitBaseline> {
  const id = randomBytes(6).toString('hex');
  const source = `corral-bench-src-${id}`;
  const repo = `corral-bench-commit-${id}`;
  await run('docker', ['run', '-d', '--name', source, '--network', 'none', image, 'sleep', '3600']);
  await run('docker', ['exec', source, 'sh', '-c', `mkdir -p /corral-bench && head -c ${writtenBytes} /dev/urandom > /corral-bench/data`]);
  await run('docker', ['commit', source, `${repo}:fork`]);
  const forks: string[] = [];
  let commits = 0;
  const cleanup = async (): Promise<void> => {
    for (let i = 0; i < forks.length; i += 50) await run('docker', ['rm', '-f', ...forks.slice(i, i + 50)]).catch(() => undefined);
    forks.length = 0;
    await run('docker', ['rm', '-f', source]).catch(() => undefined);
    await run('docker', ['rmi', '-f', `${repo}:fork`]).catch(() => undefined);
  };
  return {
    commit: {
      name: `docker commit (${writtenBytes} bytes written)`,
      async once() {
        const tag = `${repo}:c${commits++}`;
        await run('docker', ['commit', source, tag]);
        return () => run('docker', ['rmi', tag]);
      },
      async cleanup() {},
    },
    fork: {
      name: 'docker run -d <commit> + docker exec true (CLI)',
      async once() {
        const name = `corral-bench-fork-${randomBytes(6).toString('hex')}`;
        forks.push(name);
        await run('docker', ['run', '-d', '--name', name, '--network', 'none', `${repo}:fork`, 'sleep', '3600']);
        await run('docker', ['exec', name, 'true']);
      },
      async cleanup() {
        for (let i = 0; i < forks.length; i += 50) await run('docker', ['rm', '-f', ...forks.slice(i, i + 50)]).catch(() => undefined);
        forks.length = 0;
      },
    },
    cleanup,
  };
}

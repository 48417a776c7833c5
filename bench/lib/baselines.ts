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

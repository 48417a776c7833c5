import { execFileSync } from 'node:child_process';

/** The small image tests run: imported by scripts/ensure-docker.sh, no registry needed. */
export const TEST_IMAGE = process.env.CORRAL_TEST_IMAGE ?? 'corral-test/busybox:latest';

/** Why Docker-backed tests cannot run here, or undefined when an engine with the test image answers. */
export function dockerMissing(image = TEST_IMAGE): string | undefined {
  try {
    execFileSync('docker', ['image', 'inspect', image], { stdio: 'ignore', timeout: 10_000 });
    return undefined;
  } catch {
    return `no Docker engine with image ${image} (run scripts/ensure-docker.sh)`;
  }
}

/** Whether a Docker container with this name exists (running or not). */
export function containerExists(name: string): boolean {
  try {
    execFileSync('docker', ['container', 'inspect', name], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Polls until `check` returns a value other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

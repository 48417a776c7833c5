import { execFileSync } from 'node:child_process';
import { type TestContext, test } from 'node:test';

/** The small image tests run: imported by scripts/ensure-docker.sh (docker) or built offline (oci). */
export const TEST_IMAGE = process.env.CORRAL_TEST_IMAGE ?? 'corral-test/busybox:latest';

/** Why Docker-backed tests cannot run here, or undefined when an engine with the image answers. */
export function dockerMissing(image = TEST_IMAGE): string | undefined {
  try {
    execFileSync('docker', ['image', 'inspect', image], { stdio: 'ignore', timeout: 10_000 });
    return undefined;
  } catch {
    return `no Docker engine with image ${image} (run scripts/ensure-docker.sh)`;
  }
}

/**
 * Why oci-driver tests cannot run here, or undefined when they can: root, the runtime binary and
 * a C compiler for corral-agent, and (when named) a reachable registry for `registryImage`.
 */
export function ociMissing(options: { runtime?: string; registryImage?: string } = {}): string | undefined {
  const runtime = options.runtime ?? process.env.CORRAL_OCI_RUNTIME ?? 'runc';
  if (process.getuid?.() !== 0) return 'the oci driver needs root';
  try {
    execFileSync(runtime, ['--version'], { stdio: 'ignore' });
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
  } catch {
    return `${runtime} or cc missing (run scripts/ensure-oci.sh${runtime === 'crun' ? ' --crun' : ''})`;
  }
  if (options.registryImage !== undefined) {
    try {
      execFileSync('curl', ['-sf', '-m', '2', `http://${options.registryImage.split('/')[0]}/v2/`], { stdio: 'ignore' });
    } catch {
      return `no registry for ${options.registryImage} (run scripts/start-registry.sh)`;
    }
  }
  return undefined;
}

/** Why a driver's tests cannot run here, or undefined. */
export function driverMissing(driver: 'docker' | 'oci'): string | undefined {
  return driver === 'docker' ? dockerMissing() : ociMissing();
}

/** Skips (or, under `CI=true`, fails) the current test for `reason`. Returns true when the test should go on. */
export function needNothingMissing(t: TestContext, reason: string | undefined): boolean {
  if (reason === undefined) return true;
  if (process.env.CI === 'true') throw new Error(reason);
  t.skip(reason);
  return false;
}

/** Registers a stand-in for a suite that cannot run here: it fails under `CI=true` and skips otherwise. */
export function unavailableSuite(name: string, reason: string): void {
  test(name, (t) => {
    needNothingMissing(t, reason);
  });
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

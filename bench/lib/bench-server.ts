import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '../../packages/server/src/images/image-catalog.js';
import { buildRootfs } from '../../packages/server/src/images/rootfs.js';
import { createRuntimeImages } from '../../packages/server/src/runtime/create-runtime.js';
import { BENCH_KEY, BenchClient } from './corral-client.js';
import { type ServedCorral, serveCorral } from './serve.js';

/** The image every runtime scenario starts: the offline busybox test image. */
export const BENCH_IMAGE = 'corral-test/busybox:latest';

/** A `corral serve` child on a fresh data dir with the given driver, and a client for it. */
export interface BenchServer {
  driver: 'docker' | 'oci';
  served: ServedCorral;
  dataDir: string;
  instanceId: string;
  client: BenchClient;
  /** The busybox rootfs tarball the images were built from (for raw runtime baselines). */
  rootfsTar: string;
  stop(): Promise<void>;
}

/** `--driver oci|docker` (default oci). */
export function driverOption(args: string[]): 'docker' | 'oci' {
  const i = args.indexOf('--driver');
  const driver = i >= 0 ? args[i + 1] : 'oci';
  if (driver !== 'docker' && driver !== 'oci') throw new Error(`--driver must be oci or docker, got ${driver}`);
  return driver;
}

/** The offline python image (Debian + python3) a scenario may ask {@link startBenchServer} for. */
export const BENCH_PYTHON_IMAGE = 'python:3.11-slim';

/**
 * Starts a server for a runtime scenario; for oci, imports the test image (and, with
 * `withPython`, the offline python image) into its store first.
 */
export async function startBenchServer(driver: 'docker' | 'oci', extraEnv: NodeJS.ProcessEnv = {}, withPython = false): Promise<BenchServer> {
  const dataDir = mkdtempSync(join(tmpdir(), `corral-bench-${driver}-`));
  const rootfs = await buildRootfs('busybox');
  const images = await createRuntimeImages({ runtime: driver, dataDir });
  if (driver === 'oci') await buildImage('busybox', BENCH_IMAGE, images);
  if (withPython) await buildImage('python', BENCH_PYTHON_IMAGE, images);
  const served = await serveCorral({
    CORRAL_DATA_DIR: dataDir,
    CORRAL_RUNTIME: driver,
    CORRAL_RATE_LIMITS: 'off',
    CORRAL_BOOTSTRAP_API_KEY: BENCH_KEY,
    CORRAL_INSTANCE_ID: `bench-${process.pid}`,
    ...extraEnv,
  });
  return {
    driver,
    served,
    dataDir,
    instanceId: `bench-${process.pid}`,
    client: new BenchClient(served.url),
    rootfsTar: rootfs.path,
    async stop() {
      await served.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The results file name: `<scenario>` for the default driver (oci), `<scenario>-docker` otherwise. */
export function resultsFile(scenario: string, driver: 'docker' | 'oci'): string {
  return driver === 'oci' ? scenario : `${scenario}-${driver}`;
}

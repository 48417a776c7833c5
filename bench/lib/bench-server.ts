import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '../../packages/server/src/images/image-catalog.js';
import { buildRootfs } from '../../packages/server/src/images/rootfs.js';
import { createRuntimeImages } from '../../packages/server/src/runtime/create-runtime.js';
import { BENCH_KEY, BenchClient } from './corral-client.js';
import { K8S_BENCH_IMAGE, K8S_SANDBOX_RESOURCES, kubernetesServerEnv } from './kubernetes-bench.js';
import { type ServedCorral, serveCorral } from './serve.js';

/** The image every runtime scenario starts: the offline busybox test image. */
export const BENCH_IMAGE = 'corral-test/busybox:latest';

/** The drivers the runtime scenarios run on (`kubernetes`: tti, burst and exec only). */
export type BenchDriver = 'docker' | 'oci' | 'kubernetes';

/** The image a runtime scenario starts on a driver: the kubernetes driver pulls from the local registry. */
export function benchImage(driver: BenchDriver): string {
  return driver === 'kubernetes' ? K8S_BENCH_IMAGE : BENCH_IMAGE;
}

/** Extra create fields per driver: on kubernetes the API's minimum CPU and a small memory, so bursts fit the 2-core test node. */
export function createExtra(driver: BenchDriver): Record<string, unknown> {
  return driver === 'kubernetes' ? { ...K8S_SANDBOX_RESOURCES } : {};
}

/** A `corral serve` child on a fresh data dir with the given driver, and a client for it. */
export interface BenchServer {
  driver: BenchDriver;
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

/** `--driver oci|docker|kubernetes` (default oci), for the scenarios that run on the kubernetes driver too. */
export function runtimeDriverOption(args: string[]): BenchDriver {
  const i = args.indexOf('--driver');
  const driver = i >= 0 ? args[i + 1] : 'oci';
  if (driver !== 'docker' && driver !== 'oci' && driver !== 'kubernetes') throw new Error(`--driver must be oci, docker or kubernetes, got ${driver}`);
  return driver;
}

/** The offline python image (Debian + python3) a scenario may ask {@link startBenchServer} for. */
export const BENCH_PYTHON_IMAGE = 'python:3.11-slim';

/**
 * Starts a server for a runtime scenario; for oci, imports the test image (and, with
 * `withPython`, the offline python image) into its store first; for kubernetes, points it at the
 * test cluster (lib/kubernetes-bench.ts).
 */
export async function startBenchServer(driver: BenchDriver, extraEnv: NodeJS.ProcessEnv = {}, withPython = false): Promise<BenchServer> {
  const dataDir = mkdtempSync(join(tmpdir(), `corral-bench-${driver}-`));
  const rootfs = await buildRootfs('busybox');
  if (driver === 'kubernetes' && withPython) throw new Error('the python image is not offered on the kubernetes driver');
  const images = driver === 'kubernetes' ? null : await createRuntimeImages({ runtime: driver, dataDir });
  if (images && driver === 'oci') await buildImage('busybox', BENCH_IMAGE, images);
  if (images && withPython) await buildImage('python', BENCH_PYTHON_IMAGE, images);
  const served = await serveCorral({
    CORRAL_DATA_DIR: dataDir,
    CORRAL_RUNTIME: driver,
    CORRAL_RATE_LIMITS: 'off',
    CORRAL_BOOTSTRAP_API_KEY: BENCH_KEY,
    CORRAL_INSTANCE_ID: `bench-${process.pid}`,
    ...(driver === 'kubernetes' ? kubernetesServerEnv() : {}),
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

/** The results file name: `<scenario>` for the default driver (oci), `<scenario>-<driver>` otherwise. */
export function resultsFile(scenario: string, driver: BenchDriver): string {
  return driver === 'oci' ? scenario : `${scenario}-${driver}`;
}

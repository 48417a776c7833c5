import type { CorralConfig, RuntimeDriverName } from '../config.js';
import type { SandboxRuntime } from './runtime.js';
import type { RuntimeDriver } from './runtime-driver.js';
import type { RuntimeImages } from './runtime-images.js';

export { ociStateDir } from './oci/oci-driver.js';

/**
 * The drivers, by the name `CORRAL_RUNTIME` gives: the one place that names them. A driver is a
 * folder under `runtime/` exporting a {@link RuntimeDriver}, its name in `config.ts`'s
 * `RUNTIME_DRIVER_NAMES`, a line here, and its conformance test file. Each loads only when chosen.
 */
const DRIVERS: Record<Exclude<RuntimeDriverName, 'none'>, () => Promise<RuntimeDriver>> = {
  docker: async () => (await import('./docker/docker-driver.js')).dockerDriver,
  oci: async () => (await import('./oci/oci-driver.js')).ociDriver,
  kubernetes: async () => (await import('./kubernetes/kubernetes-driver.js')).kubernetesDriver,
};

/** The runtime driver the configuration names, initialised; null for `none`. */
export async function createRuntime(config: CorralConfig): Promise<SandboxRuntime | null> {
  if (config.runtime === 'none') return null;
  return (await DRIVERS[config.runtime]()).create(config);
}

/**
 * The local image store of the driver the configuration names, opened without starting the driver
 * (what `corral images` and tests use to put images where the driver finds them). Throws for `none`,
 * which keeps no images.
 */
export async function createRuntimeImages(config: Pick<CorralConfig, 'runtime' | 'dataDir'>): Promise<RuntimeImages> {
  if (config.runtime === 'none') throw new Error('the none runtime keeps no images: choose a driver with --runtime or CORRAL_RUNTIME');
  return (await DRIVERS[config.runtime]()).images(config);
}

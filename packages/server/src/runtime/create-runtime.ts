import { join } from 'node:path';
import type { CorralConfig } from '../config.js';
import type { SandboxRuntime } from './runtime.js';

/** The runtime driver the configuration names, initialised; null for `none`. */
export async function createRuntime(config: CorralConfig): Promise<SandboxRuntime | null> {
  switch (config.runtime) {
    case 'none':
      return null;
    case 'docker': {
      // The Docker client reads DOCKER_HOST itself; the driver is loaded only when selected.
      const { DockerRuntime } = await import('./docker/docker-runtime.js');
      const runtime = new DockerRuntime({ instance: config.instanceId, diskDir: join(config.dataDir, 'docker-disks') });
      await runtime.init();
      return runtime;
    }
  }
}

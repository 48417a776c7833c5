import { join } from 'node:path';
import { diskPolicyOf } from '../disk-admission.js';
import { capacityReserveOf } from '../host-capacity.js';
import type { RuntimeDriver } from '../runtime-driver.js';

/** The `docker` driver: sandboxes as Docker Engine containers. The Docker client reads DOCKER_HOST itself. */
export const dockerDriver: RuntimeDriver = {
  async create(config) {
    const { DockerRuntime } = await import('./docker-runtime.js');
    const runtime = new DockerRuntime({
      instance: config.instanceId,
      imageBuild: {
        cpus: config.imageBuildCpus,
        memoryBytes: config.imageBuildMemoryMb * 1024 ** 2,
        timeoutMs: config.imageBuildTimeoutSeconds * 1000,
        network: config.imageBuildNetwork,
      },
      // Dockerfile builds with buildah (RUN steps in a user namespace), the engine's builder where it cannot run.
      containedBuilds: { root: join(config.dataDir, 'docker-builds'), diskBytes: config.imageBuildDiskGb * 1024 ** 3 },
      diskDir: join(config.dataDir, 'docker-disks'),
      egressConnectionLog: { group: config.egressNflogGroup, binDir: join(config.dataDir, 'bin') },
      insecureRegistries: config.registryInsecure,
      diskPolicy: diskPolicyOf(config),
      capacityReserve: capacityReserveOf(config),
      sandboxCpuWeight: config.sandboxCpuWeight,
      ...(config.egressDnsUpstream !== null ? { egressDnsUpstream: config.egressDnsUpstream } : {}),
      egressTtlFloorSeconds: config.egressTtlFloorSeconds,
    });
    await runtime.init();
    return runtime;
  },
  async images() {
    const { DockerRuntimeImages } = await import('./docker-runtime-images.js');
    return new DockerRuntimeImages();
  },
};

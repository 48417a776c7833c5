import { join } from 'node:path';
import { diskPolicyOf } from '../disk-admission.js';
import { capacityReserveOf } from '../host-capacity.js';
import type { RuntimeDriver } from '../runtime-driver.js';

/** Where the oci driver keeps images and sandbox state for a data dir. */
export function ociStateDir(dataDir: string): string {
  return join(dataDir, 'oci');
}

/** The `oci` driver: daemonless runc/crun sandboxes with an agent as PID 1. */
export const ociDriver: RuntimeDriver = {
  async create(config) {
    const { OciRuntime } = await import('./oci-runtime.js');
    const userns = config.ociUserns === 'auto' ? undefined : config.ociUserns === 'off' ? null : config.ociUserns;
    const runtime = new OciRuntime({
      instance: config.instanceId,
      stateDir: ociStateDir(config.dataDir),
      egressConnectionLog: { group: config.egressNflogGroup, binDir: join(ociStateDir(config.dataDir), 'bin') },
      runtimeBinary: config.ociRuntime,
      criu: [config.criu],
      userns,
      poolSize: config.ociPoolSize,
      warmPoolMax: config.ociWarmPoolMax,
      diskPolicy: diskPolicyOf(config),
      capacityReserve: capacityReserveOf(config),
      sandboxCpuWeight: config.sandboxCpuWeight,
      insecureRegistries: config.registryInsecure,
      maxImageBytes: config.imageMaxBytes,
      imageBuild: {
        cpus: config.imageBuildCpus,
        memoryBytes: config.imageBuildMemoryMb * 1024 ** 2,
        timeoutMs: config.imageBuildTimeoutSeconds * 1000,
        network: config.imageBuildNetwork,
        diskBytes: config.imageBuildDiskGb * 1024 ** 3,
      },
      // The API's default disk_size_gb (10): most creates ask for it.
      warmDiskSizes: [10 * 1024 ** 3],
      ...(config.egressDnsUpstream !== null ? { egressDnsUpstream: config.egressDnsUpstream } : {}),
      egressTtlFloorSeconds: config.egressTtlFloorSeconds,
    });
    await runtime.init();
    return runtime;
  },
  async images(config) {
    const { OciRuntimeImages } = await import('./oci-runtime-images.js');
    return new OciRuntimeImages(ociStateDir(config.dataDir));
  },
};

import { join } from 'node:path';
import type { CorralConfig } from '../config.js';
import type { DiskPolicy } from './disk-admission.js';
import type { SandboxRuntime } from './runtime.js';
import type { RuntimeImages } from './runtime-images.js';

/** The disk admission policy the configuration sets (CORRAL_DISK_RESERVE_GB, CORRAL_DISK_OVERCOMMIT). */
export function diskPolicyOf(config: CorralConfig): DiskPolicy {
  return { reserveBytes: config.diskReserveGb * 1024 ** 3, overcommit: config.diskOvercommit };
}

/** Where the oci driver keeps images and sandbox state for a data dir. */
export function ociStateDir(dataDir: string): string {
  return join(dataDir, 'oci');
}

/** The runtime driver the configuration names, initialised; null for `none`. Drivers load only when selected. */
export async function createRuntime(config: CorralConfig): Promise<SandboxRuntime | null> {
  switch (config.runtime) {
    case 'none':
      return null;
    case 'docker': {
      // The Docker client reads DOCKER_HOST itself.
      const { DockerRuntime } = await import('./docker/docker-runtime.js');
      const runtime = new DockerRuntime({
        instance: config.instanceId,
        diskDir: join(config.dataDir, 'docker-disks'),
        egressConnectionLog: { group: config.egressNflogGroup, binDir: join(config.dataDir, 'bin') },
        insecureRegistries: config.registryInsecure,
        diskPolicy: diskPolicyOf(config),
        ...(config.egressDnsUpstream !== null ? { egressDnsUpstream: config.egressDnsUpstream } : {}),
        egressTtlFloorSeconds: config.egressTtlFloorSeconds,
      });
      await runtime.init();
      return runtime;
    }
    case 'oci': {
      const { OciRuntime } = await import('./oci/oci-runtime.js');
      const userns = config.ociUserns === 'auto' ? undefined : config.ociUserns === 'off' ? null : config.ociUserns;
      const runtime = new OciRuntime({
        instance: config.instanceId,
        stateDir: ociStateDir(config.dataDir),
        egressConnectionLog: { group: config.egressNflogGroup, binDir: join(ociStateDir(config.dataDir), 'bin') },
        runtimeBinary: config.ociRuntime,
        userns,
        poolSize: config.ociPoolSize,
        diskPolicy: diskPolicyOf(config),
        insecureRegistries: config.registryInsecure,
        maxImageBytes: config.imageMaxBytes,
        // The API's default disk_size_gb (10): most creates ask for it.
        warmDiskSizes: [10 * 1024 ** 3],
        ...(config.egressDnsUpstream !== null ? { egressDnsUpstream: config.egressDnsUpstream } : {}),
        egressTtlFloorSeconds: config.egressTtlFloorSeconds,
      });
      await runtime.init();
      return runtime;
    }
  }
}

/**
 * The local image store of the driver the configuration names, opened without starting the driver
 * (what `corral images` and tests use to put images where the driver finds them). Throws for `none`,
 * which keeps no images.
 */
export async function createRuntimeImages(config: Pick<CorralConfig, 'runtime' | 'dataDir'>): Promise<RuntimeImages> {
  switch (config.runtime) {
    case 'none':
      throw new Error('the none runtime keeps no images: choose a driver with --runtime or CORRAL_RUNTIME');
    case 'docker': {
      const { DockerRuntimeImages } = await import('./docker/docker-runtime-images.js');
      return new DockerRuntimeImages();
    }
    case 'oci': {
      const { OciRuntimeImages } = await import('./oci/oci-runtime-images.js');
      return new OciRuntimeImages(ociStateDir(config.dataDir));
    }
  }
}

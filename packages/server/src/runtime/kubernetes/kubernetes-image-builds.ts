import { join } from 'node:path';
import type { CorralConfig } from '../../config.js';
import type { ImageBuilder } from '../image-builder.js';
import { BuiltImageRegistry } from '../oci-images/built-image-registry.js';
import { ImageStore } from '../oci-images/image-store.js';
import { DEFAULT_BUILD_USERNS, OciImageBuilder } from '../oci-images/oci-image-builder.js';
import { PublishingImageBuilder } from '../oci-images/publishing-image-builder.js';

/** The kubernetes driver's image builds: the builder, and the registry its results are published to. */
export interface KubernetesImageBuilds {
  builder: ImageBuilder;
  registry: BuiltImageRegistry;
}

/**
 * The kubernetes driver's image builds from the settings, or undefined without
 * `CORRAL_K8S_IMAGE_REGISTRY`: buildah on the server's host (as on the oci driver: RUN steps in a
 * user namespace, no network unless `CORRAL_IMAGE_BUILD_NETWORK`, the build limits) with an image
 * store of its own under `<data dir>/k8s-images/`, each result pushed to the registry.
 */
export function kubernetesImageBuilds(
  config: Pick<
    CorralConfig,
    'dataDir' | 'registryInsecure' | 'k8sImageRegistry' | 'k8sImageRegistryUsername' | 'k8sImageRegistryPassword' | 'imageBuildCpus' | 'imageBuildMemoryMb' | 'imageBuildTimeoutSeconds' | 'imageBuildNetwork' | 'imageBuildDiskGb'
  >,
  onWarning?: (message: string, error: unknown) => void,
): KubernetesImageBuilds | undefined {
  if (config.k8sImageRegistry === null) return undefined;
  const login =
    config.k8sImageRegistryUsername !== null && config.k8sImageRegistryPassword !== null
      ? { username: config.k8sImageRegistryUsername, password: config.k8sImageRegistryPassword }
      : undefined;
  const registry = new BuiltImageRegistry(config.k8sImageRegistry, login);
  const root = join(config.dataDir, 'k8s-images');
  const images = new ImageStore({ root: join(root, 'store'), insecureRegistries: config.registryInsecure });
  const inner = new OciImageBuilder({
    root: join(root, 'builds'),
    images,
    cpus: config.imageBuildCpus,
    memoryBytes: config.imageBuildMemoryMb * 1024 ** 2,
    timeoutMs: config.imageBuildTimeoutSeconds * 1000,
    network: config.imageBuildNetwork,
    diskBytes: config.imageBuildDiskGb * 1024 ** 3,
    userns: DEFAULT_BUILD_USERNS,
  });
  const builder = new PublishingImageBuilder(inner, {
    images,
    registry,
    insecureRegistries: config.registryInsecure,
    workDir: join(root, 'push'),
    ...(onWarning ? { onWarning } : {}),
  });
  return { builder, registry };
}

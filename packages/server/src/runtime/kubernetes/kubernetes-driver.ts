import { join } from 'node:path';
import { diskPolicyOf } from '../disk-admission.js';
import { RuntimeError } from '../runtime.js';
import type { RuntimeDriver } from '../runtime-driver.js';
import type { RuntimeImages } from '../runtime-images.js';

/** The images of a Kubernetes cluster live on its nodes and in registries; Corral keeps none. */
const NO_LOCAL_IMAGES: RuntimeImages = {
  importRootfs: () => Promise.reject(new RuntimeError('UNSUPPORTED', 'the kubernetes driver keeps no local images: push the image to a registry the nodes can pull from')),
  importArchive: () => Promise.reject(new RuntimeError('UNSUPPORTED', 'the kubernetes driver keeps no local images: push the image to a registry the nodes can pull from')),
  list: () => Promise.resolve([]),
};

/** The `kubernetes` driver: one Pod per sandbox in `CORRAL_K8S_NAMESPACE`, through the cluster's API server. */
export const kubernetesDriver: RuntimeDriver = {
  async create(config) {
    const { KubernetesRuntime } = await import('./kubernetes-runtime.js');
    const runtime = new KubernetesRuntime({
      instance: config.instanceId,
      namespace: config.k8sNamespace,
      runtimeClass: config.k8sRuntimeClass,
      kubeconfigPath: null,
      binDir: join(config.dataDir, 'bin'),
      insecureRegistries: config.registryInsecure,
      diskPolicy: diskPolicyOf(config),
      exec: config.k8sExec,
    });
    await runtime.init();
    return runtime;
  },
  async images() {
    return NO_LOCAL_IMAGES;
  },
};

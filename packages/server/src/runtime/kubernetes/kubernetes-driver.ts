import { join } from 'node:path';
import type { V1NetworkPolicyPeer } from '@kubernetes/client-node';
import type { CorralConfig } from '../../config.js';
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

/**
 * Who may connect to sandbox Pods: the server's CIDRs (as ipBlocks) and its Pods (by the
 * namespace's `kubernetes.io/metadata.name` label and the Pods' labels). Server Pods in the
 * sandboxes' own namespace are refused: a selector there could match sandboxes.
 */
export function serverPeersOf(config: Pick<CorralConfig, 'k8sServerCidrs' | 'k8sServerPods' | 'k8sNamespace'>): V1NetworkPolicyPeer[] {
  const peers: V1NetworkPolicyPeer[] = config.k8sServerCidrs.map((cidr) => ({ ipBlock: { cidr } }));
  const pods = config.k8sServerPods;
  if (pods) {
    if (pods.namespace === config.k8sNamespace) {
      throw new RuntimeError('RUNTIME_ERROR', `CORRAL_K8S_SERVER_PODS names the sandboxes' namespace ${pods.namespace}: run the server in a namespace of its own`);
    }
    peers.push({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': pods.namespace } }, podSelector: { matchLabels: { ...pods.labels } } });
  }
  return peers;
}

/** The `kubernetes` driver: one Pod per sandbox in `CORRAL_K8S_NAMESPACE`, through the cluster's API server. */
export const kubernetesDriver: RuntimeDriver = {
  async create(config) {
    const { KubernetesRuntime } = await import('./kubernetes-runtime.js');
    const { kubernetesImageBuilds } = await import('./kubernetes-image-builds.js');
    const imageBuilds = kubernetesImageBuilds(config);
    const runtime = new KubernetesRuntime({
      instance: config.instanceId,
      namespace: config.k8sNamespace,
      runtimeClass: config.k8sRuntimeClass,
      kubeconfigPath: null,
      binDir: join(config.dataDir, 'bin'),
      insecureRegistries: config.registryInsecure,
      diskPolicy: diskPolicyOf(config),
      networkPolicy: config.k8sNetworkPolicy,
      serverPeers: serverPeersOf(config),
      blockedCidrs: config.k8sBlockedCidrs,
      exec: config.k8sExec,
      ...(imageBuilds ? { imageBuilds } : {}),
    });
    await runtime.init();
    return runtime;
  },
  async images() {
    return NO_LOCAL_IMAGES;
  },
};

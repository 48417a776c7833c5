import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { KubernetesRuntime, type KubernetesRuntimeOptions } from '../runtime/kubernetes/kubernetes-runtime.js';
import { LOCAL_TEST_REGISTRIES } from './local-registries.js';

const REPO = new URL('../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');

/** The test cluster's kubeconfig: `CORRAL_K8S_KUBECONFIG`, or the one scripts/ensure-kubernetes.sh writes. */
export const TEST_KUBECONFIG = process.env.CORRAL_K8S_KUBECONFIG ?? join(CACHE, 'kubernetes', 'kubeconfig');

/** The image Kubernetes tests run: in the local registry, which the node's Docker pulls from. */
export const K8S_TEST_IMAGE = process.env.CORRAL_K8S_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';

/** Where the kubernetes driver's tests compile `corral-agent`. */
export const K8S_TEST_BIN_DIR = join(CACHE, 'kubernetes-driver-bin');

/** Why Kubernetes tests cannot run here, or undefined when the cluster of `kubeconfig` answers with a Ready node. */
export async function kubernetesMissing(kubeconfig = TEST_KUBECONFIG): Promise<string | undefined> {
  if (!existsSync(kubeconfig)) return `no kubeconfig at ${kubeconfig} (run scripts/ensure-kubernetes.sh, or set CORRAL_K8S_KUBECONFIG)`;
  try {
    const config = new KubeConfig();
    config.loadFromFile(kubeconfig);
    const core = config.makeApiClient(CoreV1Api);
    const nodes = await Promise.race([
      core.listNode(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 3 s')), 3000).unref()),
    ]);
    if (!nodes.items.some((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))) return 'the cluster has no Ready node';
    return undefined;
  } catch (error) {
    return `the Kubernetes API of ${kubeconfig} does not answer (${(error as Error).message}); run scripts/ensure-kubernetes.sh`;
  }
}

/**
 * Registers a stand-in for a Kubernetes suite that cannot run: under `CI=true` it fails (scripts/test.sh
 * starts the cluster there), unless `CORRAL_TEST_KUBERNETES=0` left the cluster out; otherwise it skips.
 */
export function kubernetesUnavailable(name: string, reason: string): void {
  test(name, (t) => {
    if (process.env.CI === 'true' && process.env.CORRAL_TEST_KUBERNETES !== '0') throw new Error(reason);
    t.skip(reason);
  });
}

/**
 * A kubernetes driver against the test cluster with the tests' defaults: the local registries
 * allowed, the cached agent build, and CPU requests at 1 % of the limit (the 2-core node runs many
 * 1-core sandboxes at once). `options` adds to or overrides them.
 */
export function testKubernetesRuntime(options: Pick<KubernetesRuntimeOptions, 'instance' | 'namespace'> & Partial<KubernetesRuntimeOptions>): KubernetesRuntime {
  return new KubernetesRuntime({
    kubeconfigPath: TEST_KUBECONFIG,
    binDir: K8S_TEST_BIN_DIR,
    insecureRegistries: [...LOCAL_TEST_REGISTRIES],
    cpuRequestFraction: 0.01,
    ...options,
  });
}

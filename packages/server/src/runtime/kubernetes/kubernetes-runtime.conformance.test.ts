import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { runConformanceSuite } from '../conformance/conformance-suite.js';
import type { ConformanceGap } from '../conformance/conformance-suite.js';
import { KubernetesRuntime } from './kubernetes-runtime.js';
import { LOCAL_TEST_REGISTRIES } from '../../testing/local-registries.js';

const IMAGE = process.env.CORRAL_K8S_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const KUBECONFIG = process.env.CORRAL_K8S_KUBECONFIG ?? join(CACHE, 'kubernetes', 'kubeconfig');
/** The suite's namespace (`CORRAL_K8S_NAMESPACE`, default `corral-conformance`), kept between runs (deleting one takes seconds). */
const NAMESPACE = process.env.CORRAL_K8S_NAMESPACE ?? 'corral-conformance';

/** Why the suite cannot run here, or undefined when the cluster of the kubeconfig answers. */
async function missing(): Promise<string | undefined> {
  if (!existsSync(KUBECONFIG)) return `no kubeconfig at ${KUBECONFIG} (run scripts/ensure-kubernetes.sh, or set CORRAL_K8S_KUBECONFIG)`;
  try {
    const config = new KubeConfig();
    config.loadFromFile(KUBECONFIG);
    const core = config.makeApiClient(CoreV1Api);
    const nodes = await Promise.race([
      core.listNode(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 3 s')), 3000).unref()),
    ]);
    if (!nodes.items.some((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))) return 'the cluster has no Ready node';
    return undefined;
  } catch (error) {
    return `the Kubernetes API of ${KUBECONFIG} does not answer (${(error as Error).message}); run scripts/ensure-kubernetes.sh`;
  }
}

/** What Kubernetes 1.20 on dockershim (the test cluster) cannot give a Pod; docs/runtime-kubernetes.md says the same. */
const KUBERNETES_GAPS: Partial<Record<ConformanceGap, string>> = {
  cgroupNamespace:
    'no Pod field asks for a cgroup namespace in Kubernetes 1.20; with dockershim on cgroup v1 containers share the host\'s (Docker\'s default there), and the isolation report says so',
  rootNosuid: 'the container runtime mounts the container root and the CRI has no nosuid/nodev for it (allowPrivilegeEscalation: false and the dropped MKNOD stand in)',
  pidsLimit: "Kubernetes limits pids per node (the kubelet's podPidsLimit), not per Pod",
  diskWriteLimit: 'Kubernetes enforces ephemeral-storage by evicting the Pod once the kubelet measures it over the limit, not by failing writes',
  execUserFifoWithoutNetwork:
    "a sandbox without network access has only loopback, so its processes start through the API server's exec, where the container runtime itself opens /etc/passwd and blocks on a FIFO; with network access the agent resolves users and the case passes (kubernetes-agent.test.ts)",
};

function execMode(value: string | undefined): 'auto' | 'agent' | 'api' {
  return value === 'auto' || value === 'api' ? value : 'agent';
}

const reason = await missing();
if (reason !== undefined) {
  test('kubernetes runtime conformance', (t) => {
    // Not wired into CI yet: skipped there too, with the reason.
    t.skip(reason);
  });
} else {
  runConformanceSuite('kubernetes', async () => {
    const instance = `test-${randomBytes(4).toString('hex')}`;
    const runtime = new KubernetesRuntime({
      instance,
      namespace: NAMESPACE,
      kubeconfigPath: KUBECONFIG,
      binDir: join(CACHE, 'kubernetes-driver-bin'),
      insecureRegistries: [...LOCAL_TEST_REGISTRIES],
      // The test node has 2 cores and the suite runs many 1-core sandboxes at once.
      cpuRequestFraction: 0.01,
      // `agent` unless CORRAL_K8S_EXEC says otherwise: an agent that does not answer fails the
      // case instead of falling back to the exec API unseen (sandboxes without network use the API).
      exec: execMode(process.env.CORRAL_K8S_EXEC),
    });
    return {
      runtime,
      image: IMAGE,
      gaps: KUBERNETES_GAPS,
      async cleanup() {
        for (const s of await runtime.list()) await runtime.remove(s.runtimeId).catch(() => undefined);
        await runtime.close();
      },
    };
  });
}

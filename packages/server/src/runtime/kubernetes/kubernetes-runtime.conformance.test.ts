import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { runConformanceSuite } from '../conformance/conformance-suite.js';
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
      async cleanup() {
        for (const s of await runtime.list()) await runtime.remove(s.runtimeId).catch(() => undefined);
        await runtime.close();
      },
    };
  });
}

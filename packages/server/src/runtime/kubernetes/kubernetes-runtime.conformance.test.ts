import { randomBytes } from 'node:crypto';
import { KubeConfig, NetworkingV1Api } from '@kubernetes/client-node';
import { makeSpec, runConformanceSuite, runToEnd } from '../conformance/conformance-suite.js';
import type { ConformanceGap } from '../conformance/conformance-suite.js';
import { KubernetesRuntime } from './kubernetes-runtime.js';
import { LOCAL_TEST_REGISTRIES } from '../../testing/local-registries.js';
import { K8S_TEST_BIN_DIR, K8S_TEST_IMAGE as IMAGE, TEST_KUBECONFIG as KUBECONFIG, kubernetesMissing, kubernetesUnavailable } from '../../testing/kubernetes-available.js';

/** The suite's namespace (`CORRAL_K8S_NAMESPACE`, default `corral-conformance`), kept between runs (deleting one takes seconds). */
const NAMESPACE = process.env.CORRAL_K8S_NAMESPACE ?? 'corral-conformance';

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

/**
 * Whether this cluster's network enforces the driver's NetworkPolicies, measured: two networked
 * sandboxes whose NetworkPolicies exist (read back from the API), then a TCP connect from one to a
 * listener in the other. Returns the gap's reason when that connect succeeds (the network plugin ignores
 * the policies), undefined when it is refused or times out — or when a policy is missing, so the
 * isolation cases run and fail on the driver rather than being skipped.
 */
async function networkPolicyGap(runtime: KubernetesRuntime): Promise<string | undefined> {
  const config = new KubeConfig();
  config.loadFromFile(KUBECONFIG);
  await runtime.init(); // Idempotent: the suite's own init() then does nothing.
  const [a, b] = await Promise.all([runtime.create(makeSpec(IMAGE, { networkAccess: true })), runtime.create(makeSpec(IMAGE, { networkAccess: true }))]);
  try {
    const policies = await config.makeApiClient(NetworkingV1Api).listNamespacedNetworkPolicy({ namespace: NAMESPACE });
    const names = new Set(policies.items.map((p) => p.metadata?.name));
    if (!names.has(a.runtimeId) || !names.has(b.runtimeId)) return undefined;
    // b's address as b sees it (the Pod's status may not show it yet).
    const ip = (await runToEnd(runtime, b.runtimeId, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")).stdout.trim();
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip)) return undefined;
    // A listener in b that answers "reached", checked from b itself first (a positive control).
    const listener = await runtime.exec(b.runtimeId, { argv: ['/bin/sh', '-c', 'while :; do nc -l -p 8080 -e echo reached; done'] });
    listener.stdout.resume();
    listener.stderr.resume();
    let local = '';
    for (let i = 0; i < 20 && !local.includes('reached'); i++) {
      local = (await runToEnd(runtime, b.runtimeId, `timeout 3 nc -w 2 ${ip} 8080 </dev/null`)).stdout;
      if (!local.includes('reached')) await new Promise((r) => setTimeout(r, 100));
    }
    if (!local.includes('reached')) return undefined;
    const probe = await runToEnd(runtime, a.runtimeId, `timeout 3 nc -w 2 ${ip} 8080 </dev/null`);
    if (!probe.stdout.includes('reached')) return undefined;
    return `this cluster's network plugin does not enforce NetworkPolicies (measured at the start of this run: a sandbox reached a listener in another at ${ip}:8080 although both NetworkPolicies exist; the test cluster runs Pods on Docker's bridge under dockershim, with no CNI). network-policy.cluster.test.ts checks the policies the driver sends`;
  } finally {
    await Promise.all([runtime.remove(a.runtimeId), runtime.remove(b.runtimeId)]);
  }
}

function execMode(value: string | undefined): 'auto' | 'agent' | 'api' {
  return value === 'auto' || value === 'api' ? value : 'agent';
}

const reason = await kubernetesMissing();
if (reason !== undefined) {
  kubernetesUnavailable('kubernetes runtime conformance', reason);
} else {
  runConformanceSuite('kubernetes', async () => {
    const instance = `test-${randomBytes(4).toString('hex')}`;
    const runtime = new KubernetesRuntime({
      instance,
      namespace: NAMESPACE,
      kubeconfigPath: KUBECONFIG,
      binDir: K8S_TEST_BIN_DIR,
      insecureRegistries: [...LOCAL_TEST_REGISTRIES],
      // The test node has 2 cores and the suite runs many 1-core sandboxes at once.
      cpuRequestFraction: 0.01,
      // `agent` unless CORRAL_K8S_EXEC says otherwise: an agent that does not answer fails the
      // case instead of falling back to the exec API unseen (sandboxes without network use the API).
      exec: execMode(process.env.CORRAL_K8S_EXEC),
    });
    const enforcement = await networkPolicyGap(runtime);
    return {
      runtime,
      image: IMAGE,
      gaps: { ...KUBERNETES_GAPS, ...(enforcement ? { networkPolicyEnforcement: enforcement } : {}) },
      async cleanup() {
        for (const s of await runtime.list()) await runtime.remove(s.runtimeId).catch(() => undefined);
        await runtime.close();
      },
    };
  });
}

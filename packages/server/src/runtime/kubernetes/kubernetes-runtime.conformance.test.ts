import { randomBytes } from 'node:crypto';
import { runConformanceSuite } from '../conformance/conformance-suite.js';
import type { ConformanceGap } from '../conformance/conformance-suite.js';
import { K8S_TEST_IMAGE as IMAGE, kubernetesMissing, kubernetesUnavailable, testKubernetesRuntime } from '../../testing/kubernetes-available.js';

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
 * Whether the cluster's network plugin enforces NetworkPolicies: the test cluster of
 * scripts/ensure-kubernetes.sh runs the kubelet without a CNI plugin (dockershim's default network on
 * Docker's bridge), so nothing does; `CORRAL_K8S_TEST_NETWORK_POLICIES=enforced` (a cluster with
 * Calico, Cilium…) runs the isolation cases instead. What the driver sends is checked either way by
 * network-policy.cluster.test.ts.
 */
const NETWORK_POLICY_GAP =
  process.env.CORRAL_K8S_TEST_NETWORK_POLICIES === 'enforced'
    ? undefined
    : "the test cluster's kubelet runs without a CNI plugin (dockershim's default network on Docker's bridge), so nothing enforces the NetworkPolicies the driver creates (network-policy.cluster.test.ts checks them); set CORRAL_K8S_TEST_NETWORK_POLICIES=enforced on a cluster whose network plugin does";

function execMode(value: string | undefined): 'auto' | 'agent' | 'api' {
  return value === 'auto' || value === 'api' ? value : 'agent';
}

const reason = await kubernetesMissing();
if (reason !== undefined) {
  kubernetesUnavailable('kubernetes runtime conformance', reason);
} else {
  runConformanceSuite('kubernetes', async () => {
    const instance = `test-${randomBytes(4).toString('hex')}`;
    const runtime = testKubernetesRuntime({
      instance,
      namespace: NAMESPACE,
      // `agent` unless CORRAL_K8S_EXEC says otherwise: an agent that does not answer fails the
      // case instead of falling back to the exec API unseen (sandboxes without network use the API).
      exec: execMode(process.env.CORRAL_K8S_EXEC),
    });
    return {
      runtime,
      image: IMAGE,
      gaps: { ...KUBERNETES_GAPS, ...(NETWORK_POLICY_GAP ? { networkPolicyEnforcement: NETWORK_POLICY_GAP } : {}) },
      async cleanup() {
        for (const s of await runtime.list()) await runtime.remove(s.runtimeId).catch(() => undefined);
        await runtime.close();
      },
    };
  });
}

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BaselineOp } from './baselines.js';

const run = promisify(execFile);

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');

/** The test cluster of scripts/ensure-kubernetes.sh (or `CORRAL_K8S_KUBECONFIG`). */
export const KUBECONFIG = process.env.CORRAL_K8S_KUBECONFIG ?? join(CACHE, 'kubernetes', 'kubeconfig');
/** The kubectl that script builds (or `CORRAL_KUBECTL`). */
export const KUBECTL = process.env.CORRAL_KUBECTL ?? join(CACHE, 'kubernetes', 'bin', 'kubectl');
/** The namespace of the kubernetes benchmarks: the server's sandboxes and the kubectl baselines. */
export const BENCH_NAMESPACE = process.env.CORRAL_BENCH_K8S_NAMESPACE ?? 'corral-bench';
/** The image the kubelet runs for both (from the local registry; on the node after the first pull). */
export const K8S_BENCH_IMAGE = process.env.CORRAL_K8S_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
/**
 * What each sandbox (and each baseline Pod) asks for: the API's minimum CPU, so a burst fits the
 * 2-core test node (the driver's requests equal its limits).
 */
export const K8S_SANDBOX_RESOURCES = { cpu_cores: 0.1, memory_gb: 0.25 } as const;
/** The label on every baseline Pod, for cleanup. */
const BASELINE_LABEL = 'corral.dev/bench-baseline=kubectl';

/** Runs kubectl against the bench cluster. */
export async function kubectl(args: string[]): Promise<string> {
  const { stdout } = await run(KUBECTL, ['--kubeconfig', KUBECONFIG, ...args], { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** Environment for a `corral serve` child on the kubernetes driver in the bench namespace. */
export function kubernetesServerEnv(): NodeJS.ProcessEnv {
  return { KUBECONFIG, CORRAL_K8S_NAMESPACE: BENCH_NAMESPACE, CORRAL_REGISTRY_INSECURE: '127.0.0.1:5000' };
}

/**
 * `kubectl run` of the bench image (requests = limits = {@link K8S_SANDBOX_RESOURCES}, as the
 * driver's Pods, `IfNotPresent` as the driver), `kubectl wait --for=condition=Ready`, then a first
 * `kubectl exec … true`: what a user of plain Kubernetes pays for a Pod that takes a command.
 * `deleteAfter`: each run deletes its Pod after it is timed (sequential scenarios).
 */
export function kubectlRunExec(image = K8S_BENCH_IMAGE, deleteAfter = false): BaselineOp {
  const cpu = `${Math.round(K8S_SANDBOX_RESOURCES.cpu_cores * 1000)}m`;
  const memory = `${Math.round(K8S_SANDBOX_RESOURCES.memory_gb * 1024)}Mi`;
  return {
    name: 'kubectl run + wait Ready + kubectl exec true',
    async once() {
      const name = `bench-${randomBytes(5).toString('hex')}`;
      await kubectl([
        '-n', BENCH_NAMESPACE, 'run', name, `--image=${image}`, '--image-pull-policy=IfNotPresent', '--restart=Never',
        `--labels=${BASELINE_LABEL}`, `--requests=cpu=${cpu},memory=${memory}`, `--limits=cpu=${cpu},memory=${memory}`,
        '--', 'sleep', '3600',
      ]);
      await kubectl(['-n', BENCH_NAMESPACE, 'wait', '--for=condition=Ready', '--timeout=120s', `pod/${name}`]);
      await kubectl(['-n', BENCH_NAMESPACE, 'exec', name, '--', 'true']);
      // Untimed: the Pod goes once measured when `deleteAfter`, so sequential runs fit the small node.
      if (deleteAfter) return () => kubectl(['-n', BENCH_NAMESPACE, 'delete', 'pod', name, '--grace-period=0', '--force', '--wait=true']);
      return undefined;
    },
    async cleanup() {
      await kubectl(['-n', BENCH_NAMESPACE, 'delete', 'pods', '-l', BASELINE_LABEL, '--grace-period=0', '--force', '--wait=false']).catch(() => '');
    },
  };
}

/** `kubectl exec <pod> -- true` (CLI start, API server, kubelet, dockershim, docker exec). */
export async function kubectlExecTrue(pod: string): Promise<boolean> {
  await kubectl(['-n', BENCH_NAMESPACE, 'exec', pod, '--', 'true']);
  return true;
}

/** Makes the bench namespace when it is missing (the driver would, but the baselines may run first). */
export async function ensureBenchNamespace(): Promise<void> {
  const existing = await kubectl(['get', 'namespace', BENCH_NAMESPACE, '--ignore-not-found', '-o', 'name']);
  if (!existing.trim()) await kubectl(['create', 'namespace', BENCH_NAMESPACE]);
}

/**
 * Waits until the bench namespace holds no sandbox Pods of the server `instance`, so one wave's
 * deletes do not hold CPU requests the next wave needs on the small test node.
 */
export async function waitForNoSandboxPods(instance: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const names = (await kubectl(['-n', BENCH_NAMESPACE, 'get', 'pods', '-l', `corral.dev/instance=${instance}`, '-o', 'name'])).split('\n').filter(Boolean);
    if (names.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${names.length} sandbox Pods still in ${BENCH_NAMESPACE} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

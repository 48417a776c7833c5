import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { CoreV1Event, V1ContainerStatus, V1NetworkPolicyPeer, V1Pod, V1Secret } from '@kubernetes/client-node';
import { diskShortfall, NO_RESERVE } from '../disk-admission.js';
import type { DiskPolicy } from '../disk-admission.js';
import { ExecFileReader } from '../exec-file-reader.js';
import { getFileViaExec, putFileViaExec } from '../exec-files.js';
import { dialViaExec } from '../exec-relay.js';
import { ensureAgentBinary } from '../native-build.js';
import { parseImageRef } from '../registry/image-ref.js';
import { checkRegistryAddress } from '../registry/registry-address-policy.js';
import { credentialsFor } from '../registry/registry-access-check.js';
import { RuntimeError } from '../runtime.js';
import type {
  CreatedSandbox,
  DiskCapacity,
  EgressLogEntry,
  EgressPolicy,
  ExecProcess,
  ExecRequest,
  RuntimeCapabilities,
  RuntimeEvent,
  RuntimeIsolation,
  RuntimeSandboxState,
  RuntimeStats,
  SandboxFileReader,
  SandboxRuntime,
  SandboxSpec,
} from '../runtime.js';
import { runRaw, startPodExec } from './kubernetes-exec.js';
import type { PodExecTarget } from './kubernetes-exec.js';
import { AgentUnreachable, connectPodAgent, startPodAgentExec } from './pod-agent.js';
import type { PodAgentAddress } from './pod-agent.js';
import {
  AGENT_PORT,
  AGENT_SECRET_ENV,
  buildEnvSecret,
  buildPod,
  buildPullSecret,
  envSecretName,
  hasNetworkInterface,
  LABEL_INSTANCE,
  LABEL_SANDBOX_ID,
  labelValue,
  podName,
  pullSecretName,
  SANDBOX_CONTAINER,
  serverResolvConf,
} from './pod-spec.js';
import { NetworkPolicyClient } from './network-policy-client.js';
import { networkPolicyProblem } from './network-policy.js';
import { PodWatch } from './pod-watch.js';
import { parseQuantity } from './quantity.js';
import { apiErrorText, isApiStatus } from './api-errors.js';
import type { ImageBuilder } from '../image-builder.js';
import type { KubernetesImageBuilds } from './kubernetes-image-builds.js';

/** Options for {@link KubernetesRuntime}. */
export interface KubernetesRuntimeOptions {
  /** Server instance name; Pods are labelled with it and `list()` only sees its own. */
  instance: string;
  /** Namespace the sandboxes' Pods and Secrets live in (created when missing). */
  namespace: string;
  /** `runtimeClassName` of every sandbox Pod; null: the cluster's default. */
  runtimeClass?: string | null;
  /** A kubeconfig file; default: `KUBECONFIG`, the in-cluster service account, or `~/.kube/config`. */
  kubeconfigPath?: string | null;
  /** Where the host compiles the exec helper (`corral-agent`) that is copied into every sandbox. */
  binDir: string;
  /** Registries (`host[:port]`) that may be at loopback, private or link-local addresses. */
  insecureRegistries?: string[];
  /** Which disks `create()` admits against the nodes' allocatable ephemeral storage. */
  diskPolicy?: DiskPolicy;
  /** CPU request as a fraction of the sandbox's CPU limit (default 1: requests = limits). */
  cpuRequestFraction?: number;
  /** How long `create` waits for the Pod to run and take a command (default 120 s). */
  readyTimeoutMs?: number;
  /**
   * `required` (default): every sandbox gets a NetworkPolicy (its egress policy, ingress only from
   * `serverPeers`) before its Pod exists, or is not started; `off`: none, and egress policies are
   * not enforced (`capabilities().egressPolicy` false).
   */
  networkPolicy?: 'required' | 'off';
  /** Who may connect to sandbox Pods (the Corral server's Pods or addresses); empty: nobody. */
  serverPeers?: V1NetworkPolicyPeer[];
  /** CIDRs no sandbox may reach besides the private, link-local and reserved ranges. */
  blockedCidrs?: string[];
  /**
   * How processes start (`CORRAL_K8S_EXEC`): `agent` over the Pod IP, `api` through the API
   * server's exec, `auto` (default) the agent with a per-sandbox fallback to the API. Sandboxes
   * without network access have only loopback and always use the API.
   */
  exec?: 'auto' | 'agent' | 'api';
  /** The sandboxes' /etc/resolv.conf; default: from the server's own (see serverResolvConf); null: the kubelet's. */
  resolvConf?: string | null;
  /**
   * Image builds (`CORRAL_K8S_IMAGE_REGISTRY`): the builder, and the registry it publishes to,
   * where sandboxes of `corral.local/…` images pull them from; absent: no builds, and built images
   * do not start.
   */
  imageBuilds?: KubernetesImageBuilds;
}

/** How the isolation report describes sandbox networking, by NetworkPolicy mode. */
function networkIsolationText(options: KubernetesRuntimeOptions): string {
  if (options.networkPolicy === 'off') {
    return 'CORRAL_K8S_NETWORK_POLICY=off: no NetworkPolicy is created, so sandboxes can reach each other, the nodes and the cluster unless the cluster keeps Pods apart itself, and egress policies are refused (docs/networking.md)';
  }
  const ingress = (options.serverPeers ?? []).length > 0 ? 'ingress only from the Corral server (CORRAL_K8S_SERVER_CIDRS / CORRAL_K8S_SERVER_PODS)' : 'no ingress at all (neither CORRAL_K8S_SERVER_CIDRS nor CORRAL_K8S_SERVER_PODS is set: the server reaches sandboxes only through the exec API)';
  return `Each sandbox has a NetworkPolicy (its egress policy; ${ingress}; never private, link-local or metadata addresses), but whether it is enforced depends on the cluster's network plugin (Calico, Cilium… do; a plugin without NetworkPolicy support, such as Docker's bridge under dockershim, silently does not, and then sandboxes can reach each other): Corral cannot check it (docs/networking.md)`;
}

/** How long a connection to a sandbox's agent may take, handshake included, before auto mode gives up on it. */
const AGENT_CONNECT_MS = 2000;
/** How long a registry refusal of a Pod with a pull Secret may last before create fails (two kubelet attempts). */
const PULL_SECRET_GRACE_MS = 25_000;
/** How long a pull back-off without a reason waits for the kubelet's next attempt to say why (it retries after 10 s). */
const BARE_BACK_OFF_WAIT_MS = 15_000;
/** `sh -c` scripts larger than this (bytes) reach the agent through a file, not argv. */
const LARGE_SCRIPT = 100 * 1024;
/** How long an exec in `agent` mode waits for a just-created Pod's IP to appear in its status. */
const AGENT_ADDRESS_WAIT_MS = 10_000;

/** Container waiting reasons that mean the image cannot be pulled. */
const PULL_FAILURES = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull', 'RegistryUnavailable']);

/** How a sandbox's container stands, read from its Pod. */
interface PodView {
  running: boolean;
  exitCode: number | null;
  reason: string;
  pullFailure: string | null;
  /** Why the scheduler has not placed the Pod, while it has not. */
  unschedulable: string | null;
  podIP: string | null;
}

function containerOf(pod: V1Pod): V1ContainerStatus | undefined {
  return pod.status?.containerStatuses?.find((c) => c.name === SANDBOX_CONTAINER);
}

/** Reads what the driver needs from a Pod's status. */
export function podView(pod: V1Pod): PodView {
  const status = containerOf(pod);
  const terminated = status?.state?.terminated;
  // The init container (a sandbox without network) pulls the same image first.
  const waiting = [...(pod.status?.initContainerStatuses ?? []), ...(status ? [status] : [])].map((c) => c.state?.waiting).find((w) => w?.reason && PULL_FAILURES.has(w.reason));
  const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
  const phase = pod.status?.phase ?? 'Pending';
  const ended = terminated !== undefined || phase === 'Succeeded' || phase === 'Failed';
  return {
    running: !ended,
    exitCode: terminated ? terminated.exitCode : ended ? 137 : null,
    reason: terminated?.reason ?? pod.status?.reason ?? '',
    pullFailure: waiting?.reason ? `${waiting.reason}: ${waiting.message ?? ''}`.trim() : null,
    unschedulable: scheduled?.status === 'False' ? `${scheduled.reason ?? 'Unschedulable'}: ${scheduled.message ?? ''}`.trim() : null,
    podIP: pod.status?.podIP ?? null,
  };
}

/** The reason a pull failed, saying so plainly when the registry refused the Pod's credentials (or their absence). */
function pullFailureMessage(image: string, failure: string): string {
  const refused = /unauthorized|authentication required|no basic auth|denied|401/i.test(failure);
  return `pulling ${image} failed${refused ? ': the registry refused access (credentials missing or wrong)' : ''}: ${failure}`;
}

/** Sets up the sandbox once its container runs: the workspace, and what isolation it got. */
const SETUP_SCRIPT = 'mkdir -p "$1" && cat /proc/self/cgroup';

/** The sandbox's cgroup usage: `<memory> <limit> <cpu ns> <pids>` on one line, on cgroup v1 or v2. */
const STATS_SCRIPT = [
  'c=/sys/fs/cgroup',
  'if [ -f $c/memory.max ]; then',
  '  echo "$(cat $c/memory.current) $(cat $c/memory.max) $(awk \'/^usage_usec/ {printf "%d", $2*1000}\' $c/cpu.stat) $(cat $c/pids.current)"',
  'else',
  '  cpu=$(cat $c/cpuacct/cpuacct.usage 2>/dev/null || cat $c/cpu,cpuacct/cpuacct.usage 2>/dev/null || echo 0)',
  '  echo "$(cat $c/memory/memory.usage_in_bytes) $(cat $c/memory/memory.limit_in_bytes) $cpu $(cat $c/pids/pids.current 2>/dev/null || echo 1)"',
  'fi',
].join('\n');

/** The number of OOM kills in the sandbox's memory cgroup so far (cgroup v1 or v2). */
const OOM_COUNT_SCRIPT = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null | awk '$1 == \"oom_kill\" { print $2 }'";

/**
 * Runs sandboxes as Kubernetes Pods (one Pod per sandbox, `@kubernetes/client-node`).
 *
 * State comes from an informer on the instance's Pods; processes start through the API server's
 * exec API under a small helper copied into each sandbox; files and dial (without a Pod address)
 * are built on exec. See docs/runtime-kubernetes.md.
 */
export class KubernetesRuntime implements SandboxRuntime {
  readonly name = 'kubernetes';
  readonly imageBuilder?: ImageBuilder;
  private readonly options: KubernetesRuntimeOptions;
  private readonly config = new KubeConfig();
  private core!: CoreV1Api;
  private watch: PodWatch | undefined;
  /** The sandboxes' NetworkPolicies; undefined with `networkPolicy: 'off'` or before `init()`. */
  private policies: NetworkPolicyClient | undefined;
  /** The ConfigMap holding the helper, once `init()` made sure it exists. */
  private helperConfigMap: string | undefined;
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();
  /** Pods whose create is in progress (their exits are create's to report) or whose removal is. */
  private readonly quiet = new Set<string>();
  /** Pod uids whose exit was reported. */
  private readonly reported = new Set<string>();
  /** Pods the driver ended because of an OOM kill in them. */
  private readonly oomEnded = new Set<string>();
  /** Per Pod, the live execs' functions that drop their connections (called once it is removed). */
  private readonly liveExecs = new Map<string, Set<() => void>>();
  /** Last OOM kill count seen per Pod. */
  private readonly oomCounts = new Map<string, number>();
  /** Per Pod, its agent's secret (read from its env Secret once per process: any replica can serve any sandbox). */
  private readonly agentSecrets = new Map<string, string | null>();
  /** Pods whose agent did not answer (auto mode): their processes go through the exec API. */
  private readonly apiOnly = new Set<string>();
  private readonly execMode: 'auto' | 'agent' | 'api';
  private resolvConf: string | null = null;
  /** When a Pod with a pull Secret first saw its registry refuse the pull (see pullFailureFinal). */
  private readonly pullRefusedSince = new Map<string, { at: number; failure: string }>();
  /** The last pull failure with the registry's own reason (ErrImagePull…) per starting Pod: a back-off repeats it without it. */
  private readonly pullErrors = new Map<string, string>();
  /** When a starting Pod was first seen in a pull back-off whose message gives no reason. */
  private readonly bareBackOffSince = new Map<string, number>();
  /** When the Pod's events were last read for a pull failure's reason (see readPullFailureEvent). */
  private readonly pullEventsReadAt = new Map<string, number>();
  private readonly diskPolicy: DiskPolicy;
  private readonly readyTimeoutMs: number;
  private admittedBytes = 0;
  private nodeStorage: { at: number; bytes: number } | undefined;
  private isolationValue: RuntimeIsolation = {
    userNamespace: false,
    seccomp: true,
    cgroupVersion: 1,
    cgroupNamespace: false,
    reason: 'Pods on Kubernetes 1.20 share the node\'s user namespace (root in a sandbox is root on the node, confined by capabilities and seccomp); use a runtime class such as gVisor or Kata (CORRAL_K8S_RUNTIME_CLASS) for more. ',
  };

  constructor(options: KubernetesRuntimeOptions) {
    this.options = options;
    if (options.imageBuilds) this.imageBuilder = options.imageBuilds.builder;
    this.diskPolicy = options.diskPolicy ?? NO_RESERVE;
    this.readyTimeoutMs = options.readyTimeoutMs ?? 120_000;
    this.isolationValue.reason += networkIsolationText(options);
    this.execMode = options.exec ?? 'auto';
  }

  private get namespace(): string {
    return this.options.namespace;
  }

  private target(runtimeId: string): PodExecTarget {
    return { config: this.config, namespace: this.namespace, pod: runtimeId, container: SANDBOX_CONTAINER };
  }

  private get pods(): PodWatch {
    if (!this.watch) throw new RuntimeError('RUNTIME_ERROR', 'the kubernetes driver is not initialised');
    return this.watch;
  }

  async init(): Promise<void> {
    if (this.watch) return;
    try {
      if (this.options.kubeconfigPath) this.config.loadFromFile(this.options.kubeconfigPath);
      else this.config.loadFromDefault();
    } catch (error) {
      throw new RuntimeError('RUNTIME_ERROR', `cannot load the Kubernetes configuration: ${apiErrorText(error)}`, { cause: error });
    }
    this.core = this.config.makeApiClient(CoreV1Api);
    try {
      await this.core.readNamespace({ name: this.namespace });
    } catch (error) {
      if (!isApiStatus(error, 404)) throw new RuntimeError('RUNTIME_ERROR', `the Kubernetes API does not answer: ${apiErrorText(error)}`, { cause: error });
      await this.core.createNamespace({ body: { metadata: { name: this.namespace, labels: { 'app.kubernetes.io/managed-by': 'corral' } } } }).catch((e: unknown) => {
        if (!isApiStatus(e, 409)) throw new RuntimeError('RUNTIME_ERROR', `cannot create namespace ${this.namespace}: ${apiErrorText(e)}`, { cause: e });
      });
    }
    this.helperConfigMap = await this.ensureHelper();
    this.resolvConf = this.options.resolvConf !== undefined ? this.options.resolvConf : serverResolvConf(await readFile('/etc/resolv.conf', 'utf8').catch(() => ''));
    const watch = new PodWatch(this.config, this.namespace, `${LABEL_INSTANCE}=${labelValue(this.options.instance)}`);
    watch.onChange((pod, change) => this.onPodChange(pod, change));
    await watch.start();
    this.watch = watch;
    if (this.options.networkPolicy !== 'off') {
      const policies = new NetworkPolicyClient(this.config, {
        instance: this.options.instance,
        namespace: this.namespace,
        serverPeers: this.options.serverPeers ?? [],
        blockedCidrs: this.options.blockedCidrs ?? [],
      });
      await policies.check();
      // Policies left by a create that died between its policy and its Pod (the Pod's own go with it).
      await policies.sweep((name) => watch.get(name) !== undefined);
      this.policies = policies;
    }
  }

  /**
   * The ConfigMap `corral-agent-<hash>` holding the helper binary (compiled on the host), created
   * when missing; every Pod mounts it at `/.corral/bin`.
   */
  private async ensureHelper(): Promise<string> {
    const binary = await readFile(await ensureAgentBinary(this.options.binDir));
    const name = `corral-agent-${createHash('sha256').update(binary).digest('hex').slice(0, 16)}`;
    try {
      await this.core.readNamespacedConfigMap({ name, namespace: this.namespace });
      return name;
    } catch (error) {
      if (!isApiStatus(error, 404)) throw new RuntimeError('RUNTIME_ERROR', `reading ConfigMap ${name}: ${apiErrorText(error)}`, { cause: error });
    }
    try {
      await this.core.createNamespacedConfigMap({
        namespace: this.namespace,
        body: { metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'corral' } }, binaryData: { 'corral-agent': binary.toString('base64') } },
      });
    } catch (error) {
      if (!isApiStatus(error, 409)) throw new RuntimeError('RUNTIME_ERROR', `creating ConfigMap ${name} (the exec helper, ${binary.length} bytes): ${apiErrorText(error)}`, { cause: error });
    }
    return name;
  }

  capabilities(): RuntimeCapabilities {
    return { gpuCount: 0, gpuTypes: [], egressPolicy: this.options.networkPolicy !== 'off', egressDomains: false, egressOpensNoNetwork: false, sharedRuntime: true };
  }

  /** User namespace: none (Kubernetes 1.20); seccomp: RuntimeDefault; cgroups as the first sandbox saw them. */
  isolation(): RuntimeIsolation {
    return { ...this.isolationValue };
  }

  /**
   * The nodes' allocatable ephemeral storage (summed over Ready nodes, read at most every 10 s) as
   * the total; free is that minus the ephemeral-storage requests of this instance's Pods.
   */
  async diskCapacity(): Promise<DiskCapacity | undefined> {
    if (!this.nodeStorage || Date.now() - this.nodeStorage.at > 10_000) {
      const nodes = await this.core.listNode();
      let bytes = 0;
      for (const node of nodes.items) {
        const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
        const allocatable = node.status?.allocatable?.['ephemeral-storage'];
        if (ready && allocatable) bytes += parseQuantity(allocatable);
      }
      this.nodeStorage = { at: Date.now(), bytes };
    }
    let requested = this.admittedBytes;
    for (const pod of this.pods.list()) {
      if (!podView(pod).running) continue;
      const request = pod.spec?.containers[0]?.resources?.requests?.['ephemeral-storage'];
      if (request) requested += parseQuantity(request);
    }
    const totalBytes = this.nodeStorage.bytes;
    return { totalBytes, freeBytes: Math.max(0, totalBytes - requested), allocatedBytes: requested, usedBytes: 0 };
  }

  async create(requested: SandboxSpec): Promise<CreatedSandbox> {
    const spec = this.resolveBuiltImage(requested);
    const capacity = await this.diskCapacity();
    if (capacity) {
      const shortfall = diskShortfall(capacity, spec.diskBytes, this.diskPolicy);
      if (shortfall) throw new RuntimeError('START_FAILED', `not enough disk space: ${shortfall}`);
    }
    if (spec.gpuCount > 0) throw new RuntimeError('UNSUPPORTED', `${spec.gpuCount} GPUs requested; the kubernetes driver does not schedule GPUs yet`);
    await this.checkImage(spec.image, spec.registryAuth);
    const egress = this.egressOf(spec);
    this.admittedBytes += spec.diskBytes;
    const runtimeId = podName(spec.sandboxId);
    this.quiet.add(runtimeId);
    // The policy exists before the Pod, so no moment of the Pod runs without it.
    const start = async (): Promise<void> => {
      await this.policies?.apply(spec.sandboxId, runtimeId, egress);
      await this.createPod(spec, runtimeId);
    };
    try {
      try {
        await start();
      } catch (error) {
        if (!isApiStatus(error, 409)) throw error;
        // Objects of an earlier attempt at this sandbox (the Pod's name is derived from its id): a
        // replica that died while it provisioned it, whose work this one adopted. Remove them, start again.
        await this.deleteObjects(runtimeId, spec.sandboxId);
        await start();
      }
      const uid = this.pods.get(runtimeId)?.metadata?.uid;
      if (uid) await this.policies?.own(runtimeId, { name: runtimeId, uid }).catch(() => undefined);
      return { runtimeId, kubernetesJobId: runtimeId };
    } catch (error) {
      await this.deleteObjects(runtimeId, spec.sandboxId).catch(() => undefined);
      if (error instanceof RuntimeError) throw error;
      throw new RuntimeError('START_FAILED', `starting the sandbox failed: ${apiErrorText(error)}`, { cause: error });
    } finally {
      this.admittedBytes -= spec.diskBytes;
      this.quiet.delete(runtimeId);
      this.pullRefusedSince.delete(runtimeId);
      this.pullErrors.delete(runtimeId);
      this.bareBackOffSince.delete(runtimeId);
      this.pullEventsReadAt.delete(runtimeId);
    }
  }

  /**
   * The egress policy a spec's NetworkPolicy holds: none out for a sandbox without a network
   * interface, else its policy (open when absent). Throws UNSUPPORTED for what a NetworkPolicy
   * cannot express (domain entries), and when NetworkPolicies are off for any policy but open.
   */
  private egressOf(spec: SandboxSpec): EgressPolicy {
    if (!hasNetworkInterface(spec)) return { allowlist: [], denylist: null };
    const policy = spec.egress ?? { allowlist: null, denylist: null };
    this.checkEnforceable(policy, spec.sandboxId);
    return policy;
  }

  private checkEnforceable(policy: EgressPolicy, what: string): void {
    const open = policy.allowlist === null && (policy.denylist === null || policy.denylist.length === 0);
    if (!this.policies && !open) throw new RuntimeError('UNSUPPORTED', `CORRAL_K8S_NETWORK_POLICY=off: the kubernetes driver does not enforce egress policies (${what})`);
    const problem = networkPolicyProblem(policy);
    if (problem) throw new RuntimeError('UNSUPPORTED', `${problem.list}[${problem.index}]: ${problem.reason}`);
  }

  /**
   * The spec with a built image (`corral.local/<owner>/<name>:<tag>`, whose use the image service
   * checked) replaced by where it is published, pulled with the registry's credentials (never the
   * user's). Refuses (IMAGE_PULL_FAILED) references under the publishing prefix, and built images
   * without `CORRAL_K8S_IMAGE_REGISTRY`.
   */
  private resolveBuiltImage(spec: SandboxSpec): SandboxSpec {
    const builds = this.options.imageBuilds;
    const refused = builds?.registry.refusal(spec.image);
    if (refused !== undefined) throw new RuntimeError('IMAGE_PULL_FAILED', refused);
    let registry: string;
    try {
      registry = parseImageRef(spec.image).registry.toLowerCase();
    } catch {
      return spec;
    }
    if (registry !== 'corral.local') return spec;
    if (!builds) throw new RuntimeError('IMAGE_PULL_FAILED', `${spec.image} is a built image: the kubernetes driver runs built images only with CORRAL_K8S_IMAGE_REGISTRY set`);
    const { registryAuth: _userAuth, ...rest } = spec;
    const login = builds.registry.login;
    return {
      ...rest,
      image: builds.registry.publishedRef(spec.image),
      ...(login ? { registryAuth: { username: login.username, password: login.password, serverAddress: builds.registry.host } } : {}),
    };
  }

  /**
   * Refuses image references that cannot be parsed, registries at addresses the operator did not
   * allow, and credentials made for another registry (never handed to the kubelet for this one).
   */
  private async checkImage(image: string, auth: SandboxSpec['registryAuth']): Promise<void> {
    let ref;
    try {
      ref = parseImageRef(image);
      await checkRegistryAddress(ref.registry, this.options.insecureRegistries ?? []);
    } catch (error) {
      throw new RuntimeError('IMAGE_PULL_FAILED', `cannot pull ${image}: ${(error as Error).message}`, { cause: error });
    }
    credentialsFor(ref, auth);
  }

  private async createPod(spec: SandboxSpec, runtimeId: string): Promise<void> {
    const secrets: V1Secret[] = [];
    const agentSecret = randomBytes(32).toString('base64url');
    const envSecret = buildEnvSecret(spec, envSecretName(runtimeId), this.options, agentSecret);
    const pullSecret = buildPullSecret(spec, pullSecretName(runtimeId), this.options);
    this.agentSecrets.set(runtimeId, agentSecret);
    for (const secret of [envSecret, pullSecret]) {
      if (!secret) continue;
      secrets.push(await this.core.createNamespacedSecret({ namespace: this.namespace, body: secret }));
    }
    const pod = await this.core.createNamespacedPod({
      namespace: this.namespace,
      body: buildPod(spec, runtimeId, {
        ...this.options,
        runtimeClass: this.options.runtimeClass ?? null,
        cpuRequestFraction: this.options.cpuRequestFraction ?? 1,
        helperConfigMap: this.helperConfigMap ?? '',
        resolvConf: this.resolvConf,
        envSecret: envSecretName(runtimeId),
        pullSecret: pullSecret?.metadata?.name ?? null,
      }),
    });
    // The Secrets belong to the Pod: the garbage collector deletes them with it (remove() does too).
    await Promise.all(
      secrets.map((secret) =>
        this.core
          .replaceNamespacedSecret({
            name: secret.metadata?.name ?? '',
            namespace: this.namespace,
            body: { ...secret, metadata: { ...secret.metadata, ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: runtimeId, uid: pod.metadata?.uid ?? '' }] } },
          })
          .catch(() => undefined),
      ),
    );
    // Exec works as soon as the kubelet runs the container, before the Pod's status says so (the
    // kubelet reports it up to a second later): so once the Pod is on a node, setUp() tries.
    let lastScheduling = '';
    await this.pods.waitFor(
      runtimeId,
      (current, deleted) => {
        if (deleted) throw new RuntimeError('START_FAILED', `Pod ${runtimeId} was deleted while it started`);
        if (!current) return undefined;
        const view = podView(current);
        const failed = view.pullFailure && this.pullFailureFinal(runtimeId, current, view.pullFailure);
        if (failed) throw new RuntimeError('IMAGE_PULL_FAILED', pullFailureMessage(spec.image, failed));
        if (view.unschedulable) lastScheduling = view.unschedulable;
        return current.spec?.nodeName || !view.running ? true : undefined;
      },
      this.readyTimeoutMs,
      () => new RuntimeError('START_FAILED', `the sandbox was not scheduled within ${this.readyTimeoutMs} ms${lastScheduling ? ` (${lastScheduling})` : ''}`),
    );
    await this.setUp(runtimeId, spec);
  }

  /**
   * Throws IMAGE_PULL_FAILED when the kubelet cannot pull the image, START_FAILED with the exit code
   * and the start command's output once the container ended. Returns whether the container runs.
   */
  private async failIfEnded(runtimeId: string, image: string): Promise<boolean> {
    const pod = this.pods.get(runtimeId);
    if (!pod) throw new RuntimeError('START_FAILED', `Pod ${runtimeId} is gone`);
    const view = podView(pod);
    const failed = view.pullFailure && this.pullFailureFinal(runtimeId, pod, view.pullFailure);
    if (failed) throw new RuntimeError('IMAGE_PULL_FAILED', pullFailureMessage(image, failed));
    if (view.running) return containerOf(pod)?.state?.running !== undefined;
    const logs = await this.logs(runtimeId, 2048).catch(() => '');
    throw new RuntimeError('START_FAILED', `the start command exited with code ${view.exitCode ?? '?'} before the sandbox was ready${logs ? `: ${logs.trim()}` : ''}`);
  }

  /**
   * Makes the workspace (the first process in the sandbox); retried while the container is
   * starting. Through the agent once the Pod's status has its address (which the kubelet reports
   * up to a second after the container started), through the exec API until then; in auto mode,
   * an agent that does not answer three times while the container runs sends the sandbox to the
   * exec API for good.
   */
  private async setUp(runtimeId: string, spec: SandboxSpec): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    const setup = ['/bin/sh', '-c', SETUP_SCRIPT, 'corral-setup', spec.workspacePath];
    let last = '';
    let agentFailures = 0;
    while (Date.now() < deadline) {
      const running = await this.failIfEnded(runtimeId, spec.image);
      const address = this.agentEligible(runtimeId) ? await this.agentAddress(runtimeId) : null;
      try {
        let r: { exitCode: number; stdout: string; stderr: string };
        if (address) {
          try {
            r = await this.runOnAgent(await connectPodAgent(address, AGENT_CONNECT_MS), setup);
          } catch (error) {
            if (error instanceof AgentUnreachable && running && ++agentFailures >= 3 && this.execMode === 'auto') this.apiOnly.add(runtimeId);
            throw error;
          }
        } else {
          r = await runRaw(this.target(runtimeId), setup);
        }
        if (r.exitCode === 0) {
          this.noteCgroups(r.stdout);
          return;
        }
        last = `exit ${r.exitCode}: ${r.stderr.trim()}`;
      } catch (error) {
        last = apiErrorText(error);
      }
      // Not started yet (pulling, init container), or a container that stopped fails execs before
      // its status says so: give the watch a moment.
      await delay(running ? 300 : 150);
      await this.failIfEnded(runtimeId, spec.image);
    }
    throw new RuntimeError('START_FAILED', `the sandbox never accepted a command within ${this.readyTimeoutMs} ms (needs /bin/sh and mkdir): ${last}`);
  }

  /** Whether the sandbox's processes go through its agent: not in api mode, only with network access, not after a fallback. */
  private agentEligible(runtimeId: string): boolean {
    if (this.execMode === 'api' || this.apiOnly.has(runtimeId)) return false;
    return this.pods.get(runtimeId)?.metadata?.annotations?.['corral.dev/network-access'] === 'true';
  }

  /** The sandbox's agent address (Pod IP, port, secret), or null while the Pod has no IP or its Secret holds no agent secret. */
  private async agentAddress(runtimeId: string): Promise<PodAgentAddress | null> {
    const host = podView(this.pods.get(runtimeId) ?? {}).podIP;
    if (!host) return null;
    let secret = this.agentSecrets.get(runtimeId);
    if (secret === undefined) {
      try {
        const stored = await this.core.readNamespacedSecret({ name: envSecretName(runtimeId), namespace: this.namespace });
        const encoded = stored.data?.[AGENT_SECRET_ENV];
        secret = encoded ? Buffer.from(encoded, 'base64').toString('utf8') : null;
      } catch (error) {
        if (!isApiStatus(error, 404)) throw new RuntimeError('RUNTIME_ERROR', `reading the agent secret of ${runtimeId}: ${apiErrorText(error)}`, { cause: error });
        secret = null;
      }
      this.agentSecrets.set(runtimeId, secret);
    }
    return secret ? { host, port: AGENT_PORT, secret } : null;
  }

  /**
   * An authenticated connection to the sandbox's agent, or null when its processes go through the
   * exec API (api mode, no network access, a Pod of an older driver, or auto mode's fallback: the
   * agent did not answer within {@link AGENT_CONNECT_MS}, decided once per sandbox).
   */
  private async openAgent(runtimeId: string): Promise<Socket | null> {
    if (!this.agentEligible(runtimeId)) return null;
    let address = await this.agentAddress(runtimeId);
    if (!address && this.execMode === 'agent') {
      // Just created: the kubelet reports the Pod's IP up to a second after the container started.
      await this.pods.waitFor(runtimeId, (pod) => (pod === undefined || podView(pod).podIP ? true : undefined), AGENT_ADDRESS_WAIT_MS, () => new RuntimeError('RUNTIME_ERROR', `sandbox ${runtimeId} has no Pod IP after ${AGENT_ADDRESS_WAIT_MS} ms`));
      address = await this.agentAddress(runtimeId);
      if (!address) throw new RuntimeError('RUNTIME_ERROR', `sandbox ${runtimeId} has no agent address (no Pod IP or agent secret)`);
    }
    // Auto mode: the exec API while the status has no IP yet (just created), the agent after.
    if (!address) return null;
    try {
      return await connectPodAgent(address, AGENT_CONNECT_MS);
    } catch (error) {
      if (!(error instanceof AgentUnreachable) || this.execMode === 'agent') throw error;
      this.apiOnly.add(runtimeId);
      return null;
    }
  }

  /** Runs a command to its end on an agent connection and collects its output. */
  private async runOnAgent(socket: Socket, argv: string[], input?: Buffer): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const proc = startPodAgentExec(socket, { argv, stdin: input !== undefined });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    proc.stdout.on('data', (c: Buffer) => out.push(c));
    proc.stderr.on('data', (c: Buffer) => err.push(c));
    proc.stdin?.end(input);
    const { exitCode } = await proc.wait();
    return { exitCode, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
  }

  /** Runs one of the driver's own scripts in the sandbox: through its agent when it has one, else the exec API. */
  private async runScript(runtimeId: string, argv: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const socket = await this.openAgent(runtimeId);
    return socket ? this.runOnAgent(socket, argv) : runRaw(this.target(runtimeId), argv);
  }

  /**
   * Whether a pull failure ends the create. A refusal by the registry while the Pod has a pull
   * Secret may be the kubelet's: it sometimes pulls before its secret cache has a new Pod's Secret
   * ("Unable to retrieve pull secret … not registered") and then without credentials, and retries
   * after a 10 s back-off. Such a refusal ends the create only once it lasted {@link PULL_SECRET_GRACE_MS}.
   * Returns the failure to report, or null to keep waiting.
   */
  private pullFailureFinal(runtimeId: string, pod: V1Pod, reported: string): string | null {
    // "ImagePullBackOff: Back-off pulling image …" says only that the kubelet waits to retry; the
    // reason is the last ErrImagePull's. When the watch delivered none (updates coalesce), wait for
    // the retry's (after the kubelet's 10 s back-off), up to BARE_BACK_OFF_WAIT_MS.
    let failure = reported;
    if (!reported.startsWith('ImagePullBackOff')) this.pullErrors.set(runtimeId, reported);
    else {
      const known = this.pullErrors.get(runtimeId);
      if (known) failure = known;
      else if (/^ImagePullBackOff: Back-off pulling image/.test(reported)) {
        const since = this.bareBackOffSince.get(runtimeId) ?? Date.now();
        this.bareBackOffSince.set(runtimeId, since);
        this.readPullFailureEvent(runtimeId);
        if (Date.now() - since < BARE_BACK_OFF_WAIT_MS) return null;
      }
    }
    const refusal = this.pullRefusedSince.get(runtimeId);
    const refused = /unauthorized|authentication required|no basic auth|denied|401/i.test(failure);
    if (!pod.spec?.imagePullSecrets?.length || (!refused && !(refusal && failure.startsWith('ImagePullBackOff')))) return failure;
    // The back-off between attempts says nothing new: the refusal seen first is the reason.
    const first = refusal ?? { at: Date.now(), failure };
    this.pullRefusedSince.set(runtimeId, first);
    return Date.now() - first.at >= PULL_SECRET_GRACE_MS ? first.failure : null;
  }

  /**
   * Reads the Pod's newest `Failed` event ("Failed to pull image …: … 401 Unauthorized") into
   * pullErrors, at most once a second per Pod: the kubelet records every failed attempt as an event,
   * while the Pod's status may only ever show the back-off between them (status updates coalesce).
   * The create's polling (failIfEnded) picks the reason up.
   */
  private readPullFailureEvent(runtimeId: string): void {
    const now = Date.now();
    if (now - (this.pullEventsReadAt.get(runtimeId) ?? 0) < 1000) return;
    this.pullEventsReadAt.set(runtimeId, now);
    void this.core
      .listNamespacedEvent({ namespace: this.namespace, fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${runtimeId},reason=Failed` })
      .then((list) => {
        const failures = list.items
          .filter((e) => /^Failed to pull image/.test(e.message ?? ''))
          .sort((a, b) => eventTime(a) - eventTime(b));
        const newest = failures.at(-1)?.message;
        if (newest && !this.pullErrors.has(runtimeId) && this.bareBackOffSince.has(runtimeId)) this.pullErrors.set(runtimeId, `ErrImagePull: ${newest}`);
      })
      .catch(() => undefined);
  }

  /** Learns the cgroup version and whether sandboxes have a cgroup namespace from a sandbox's /proc/self/cgroup. */
  private noteCgroups(procSelfCgroup: string): void {
    const lines = procSelfCgroup.trim().split('\n').filter(Boolean);
    if (lines.length === 0) return;
    this.isolationValue.cgroupVersion = lines.every((l) => l.startsWith('0::')) ? 2 : 1;
    this.isolationValue.cgroupNamespace = lines.every((l) => /^\d+:[^:]*:\/$/.test(l));
  }

  async exec(runtimeId: string, request: ExecRequest): Promise<ExecProcess> {
    const pod = this.pods.get(runtimeId);
    if (!pod || !podView(pod).running) throw new RuntimeError('NOT_FOUND', `no running sandbox ${runtimeId}`);
    let live = this.liveExecs.get(runtimeId);
    if (!live) {
      live = new Set();
      this.liveExecs.set(runtimeId, live);
    }
    const onExit = (exitCode: number): void => {
      if (exitCode === 137) void this.checkOom(runtimeId).catch(() => undefined);
    };
    const socket = await this.openAgent(runtimeId);
    if (!socket) return startPodExec(this.target(runtimeId), request, onExit, live);
    const proc = startPodAgentExec(socket, await this.spillLargeScript(runtimeId, request, socket));
    // The connection is dropped once the Pod is removed, whatever the network does meanwhile.
    const abandon = (): void => void socket.destroy();
    live.add(abandon);
    void proc.wait().then(({ exitCode }) => {
      live.delete(abandon);
      onExit(exitCode);
    });
    return proc;
  }

  /**
   * A `sh -c` script over {@link LARGE_SCRIPT} bytes (beyond the kernel's 128 KiB limit for one
   * argument) is written to a file by a first agent exec, as the same user, and sourced from an
   * open descriptor after the file is deleted, so $0, $1… stay as given. `held` is the connection
   * the script will run on: closed when writing fails.
   */
  private async spillLargeScript(runtimeId: string, request: ExecRequest, held: Socket): Promise<ExecRequest> {
    const [shell, flag, script, ...rest] = request.argv;
    if (shell === undefined || flag !== '-c' || script === undefined || Buffer.byteLength(script) <= LARGE_SCRIPT) return request;
    if (!/(^|\/)(sh|bash|dash|ash|zsh)$/.test(shell)) return request;
    const file = `/tmp/.corral-script-${randomBytes(16).toString('hex')}`;
    const socket = await this.openAgent(runtimeId);
    if (!socket) return request;
    const writer = startPodAgentExec(socket, { argv: ['/bin/sh', '-c', 'umask 077 && cat > "$1"', 'corral-spill', file], user: request.user, stdin: true });
    writer.stdout.resume();
    writer.stderr.resume();
    writer.stdin?.end(script);
    const { exitCode } = await writer.wait();
    if (exitCode !== 0) {
      held.destroy();
      throw new RuntimeError('RUNTIME_ERROR', `could not pass the ${Buffer.byteLength(script)}-byte script to the sandbox (exit ${exitCode})`);
    }
    return { ...request, argv: [shell, '-c', `exec 9<'${file}' && rm -f '${file}' && . /dev/fd/9`, ...rest] };
  }

  /**
   * After an exec was SIGKILLed: when the sandbox's memory cgroup counted a new OOM kill, the whole
   * sandbox ends (its Pod's `activeDeadlineSeconds` set to 1, so the kubelet stops it and it keeps
   * its status and logs), as on the other drivers, and its exit is reported as an OOM kill.
   */
  private async checkOom(runtimeId: string): Promise<void> {
    const r = await this.runScript(runtimeId, ['/bin/sh', '-c', OOM_COUNT_SCRIPT]);
    const count = Number(r.stdout.trim().split('\n')[0]);
    if (!Number.isInteger(count) || count <= (this.oomCounts.get(runtimeId) ?? 0)) return;
    this.oomCounts.set(runtimeId, count);
    this.oomEnded.add(runtimeId);
    await this.endPod(runtimeId);
  }

  /** Stops a Pod without deleting it: a 1 s active deadline, which the kubelet enforces at once. */
  private async endPod(runtimeId: string): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const pod = await this.core.readNamespacedPod({ name: runtimeId, namespace: this.namespace });
      if (!pod.spec) return;
      pod.spec.activeDeadlineSeconds = 1;
      try {
        await this.core.replaceNamespacedPod({ name: runtimeId, namespace: this.namespace, body: pod });
        return;
      } catch (error) {
        if (!isApiStatus(error, 409)) throw error;
      }
    }
  }

  putFile(runtimeId: string, path: string, content: Readable): Promise<{ size: number }> {
    return putFileViaExec(this, runtimeId, path, content);
  }

  getFile(runtimeId: string, path: string): Promise<{ size: number; stream: Readable }> {
    return getFileViaExec(this, runtimeId, path);
  }

  openFileReader(runtimeId: string, path: string): SandboxFileReader {
    return new ExecFileReader(this, runtimeId, path);
  }

  /** A TCP connection to the Pod's address for a sandbox with network access; a relay exec'd inside it otherwise. */
  async dial(runtimeId: string, port: number): Promise<Duplex> {
    const pod = this.pods.get(runtimeId);
    if (!pod || !podView(pod).running) throw new RuntimeError('NOT_FOUND', `no running sandbox ${runtimeId}`);
    const ip = podView(pod).podIP;
    if (ip && pod.metadata?.annotations?.['corral.dev/network-access'] === 'true') {
      return new Promise((resolve, reject) => {
        const socket = connect({ host: ip, port });
        socket.once('connect', () => {
          socket.removeListener('error', reject);
          resolve(socket);
        });
        socket.once('error', reject);
      });
    }
    return dialViaExec(this, runtimeId, port);
  }

  async logs(runtimeId: string, maxBytes: number): Promise<string> {
    let text: string;
    try {
      text = await this.core.readNamespacedPodLog({ name: runtimeId, namespace: this.namespace, container: SANDBOX_CONTAINER });
    } catch (error) {
      if (isApiStatus(error, 404)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`, { cause: error });
      throw new RuntimeError('RUNTIME_ERROR', `reading the logs of ${runtimeId}: ${apiErrorText(error)}`, { cause: error });
    }
    const bytes = Buffer.from(text ?? '', 'utf8');
    return bytes.subarray(Math.max(0, bytes.length - maxBytes)).toString('utf8');
  }

  /** Read from the sandbox's own cgroup files through an exec (no metrics server needed). */
  async stats(runtimeId: string): Promise<RuntimeStats> {
    const pod = this.pods.get(runtimeId);
    if (!pod || !podView(pod).running) throw new RuntimeError('NOT_FOUND', `no running sandbox ${runtimeId}`);
    const r = await this.runScript(runtimeId, ['/bin/sh', '-c', STATS_SCRIPT]);
    const [memory, limit, cpu, pids] = r.stdout.trim().split(/\s+/).map(Number);
    const limitBytes = Number.isFinite(limit) ? (limit as number) : 0;
    return { memoryBytes: memory || 0, memoryLimitBytes: limitBytes, cpuUsageNanos: cpu || 0, pids: pids || 0 };
  }

  async inspect(runtimeId: string): Promise<RuntimeSandboxState | undefined> {
    const pod = this.pods.get(runtimeId);
    return pod ? this.toState(pod) : undefined;
  }

  private toState(pod: V1Pod): RuntimeSandboxState {
    const view = podView(pod);
    const runtimeId = pod.metadata?.name ?? '';
    return {
      sandboxId: pod.metadata?.annotations?.[LABEL_SANDBOX_ID] ?? pod.metadata?.labels?.[LABEL_SANDBOX_ID] ?? '',
      runtimeId,
      running: view.running,
      exitCode: view.running ? null : view.exitCode,
      oomKilled: !view.running && this.isOom(runtimeId, view),
    };
  }

  /** An OOM ended the sandbox: its main process was OOM-killed (reason and 137), or the driver ended it after an OOM kill. */
  private isOom(runtimeId: string, view: PodView): boolean {
    if (this.oomEnded.has(runtimeId)) return true;
    return view.reason === 'OOMKilled' && view.exitCode === 137;
  }

  /**
   * Deletes the Pod (no grace period) and its Secrets, and waits until the watch has seen the Pod
   * go. A Pod of another instance is left alone.
   */
  async remove(runtimeId: string): Promise<void> {
    let pod = this.pods.get(runtimeId);
    if (!pod) {
      try {
        pod = await this.core.readNamespacedPod({ name: runtimeId, namespace: this.namespace });
      } catch (error) {
        if (!isApiStatus(error, 404)) throw new RuntimeError('RUNTIME_ERROR', `removing ${runtimeId}: ${apiErrorText(error)}`, { cause: error });
      }
      if (pod && pod.metadata?.labels?.[LABEL_INSTANCE] !== labelValue(this.options.instance)) return;
    }
    const sandboxId = pod?.metadata?.annotations?.[LABEL_SANDBOX_ID] ?? null;
    this.quiet.add(runtimeId);
    try {
      await this.deleteObjects(runtimeId, sandboxId);
    } finally {
      this.quiet.delete(runtimeId);
    }
    this.oomEnded.delete(runtimeId);
    this.oomCounts.delete(runtimeId);
    this.agentSecrets.delete(runtimeId);
    this.apiOnly.delete(runtimeId);
    for (const abandon of this.liveExecs.get(runtimeId) ?? []) abandon();
    this.liveExecs.delete(runtimeId);
  }

  private async deleteObjects(runtimeId: string, sandboxId: string | null): Promise<void> {
    try {
      await this.core.deleteNamespacedPod({ name: runtimeId, namespace: this.namespace, gracePeriodSeconds: 0 });
    } catch (error) {
      if (!isApiStatus(error, 404)) throw new RuntimeError('RUNTIME_ERROR', `deleting Pod ${runtimeId}: ${apiErrorText(error)}`, { cause: error });
    }
    const selector = [`${LABEL_INSTANCE}=${labelValue(this.options.instance)}`];
    if (sandboxId !== null) selector.push(`${LABEL_SANDBOX_ID}=${labelValue(sandboxId)}`);
    for (const name of [envSecretName(runtimeId), pullSecretName(runtimeId)]) {
      try {
        const secret = await this.core.readNamespacedSecret({ name, namespace: this.namespace });
        if (secret.metadata?.labels?.[LABEL_INSTANCE] !== labelValue(this.options.instance)) continue;
        await this.core.deleteNamespacedSecret({ name, namespace: this.namespace });
      } catch (error) {
        if (!isApiStatus(error, 404)) throw new RuntimeError('RUNTIME_ERROR', `deleting Secret ${name}: ${apiErrorText(error)}`, { cause: error });
      }
    }
    await this.pods.waitFor(runtimeId, (pod) => (pod === undefined ? true : undefined), 60_000, () => new RuntimeError('RUNTIME_ERROR', `Pod ${runtimeId} was not deleted within 60 s`));
    // Only once the Pod is gone: until then it stays under its policy.
    await this.policies?.remove(runtimeId);
  }

  /** Every Pod of this instance in the watch's cache. */
  async list(): Promise<RuntimeSandboxState[]> {
    return this.pods.list().map((pod) => this.toState(pod));
  }

  /**
   * Replaces the sandbox's NetworkPolicy with one for `policy`. A sandbox started without a network
   * interface keeps none: anything but the empty allow list is UNSUPPORTED for it.
   */
  async setEgressPolicy(runtimeId: string, policy: EgressPolicy): Promise<void> {
    const pod = this.pods.get(runtimeId);
    if (!pod || !podView(pod).running) throw new RuntimeError('NOT_FOUND', `no running sandbox ${runtimeId}`);
    const closed = policy.allowlist !== null && policy.allowlist.length === 0;
    if (!closed && pod.metadata?.annotations?.['corral.dev/network-access'] !== 'true') {
      throw new RuntimeError('UNSUPPORTED', `sandbox ${runtimeId} was started without a network interface; its egress can only stay closed`);
    }
    this.checkEnforceable(policy, `sandbox ${runtimeId}`);
    const sandboxId = pod.metadata?.annotations?.[LABEL_SANDBOX_ID] ?? pod.metadata?.labels?.[LABEL_SANDBOX_ID] ?? runtimeId;
    await this.policies?.apply(sandboxId, runtimeId, policy);
  }

  /** Always empty: a NetworkPolicy logs nothing the driver can read. */
  async egressLog(_runtimeId: string, _limit: number): Promise<EgressLogEntry[]> {
    return [];
  }

  onEvent(listener: (event: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reports a container's end once per Pod (not while the driver itself creates or removes it). */
  private onPodChange(pod: V1Pod, change: 'add' | 'update' | 'delete'): void {
    const runtimeId = pod.metadata?.name ?? '';
    const uid = pod.metadata?.uid ?? runtimeId;
    if (change === 'delete') {
      this.reported.delete(uid);
      return;
    }
    const view = podView(pod);
    if (view.running || this.reported.has(uid) || this.quiet.has(runtimeId)) return;
    this.reported.add(uid);
    const event: RuntimeEvent = {
      type: 'exited',
      sandboxId: pod.metadata?.annotations?.[LABEL_SANDBOX_ID] ?? '',
      runtimeId,
      exitCode: view.exitCode ?? 137,
      oomKilled: this.isOom(runtimeId, view),
    };
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  async close(): Promise<void> {
    await this.watch?.stop();
    this.watch = undefined;
    this.listeners.clear();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** When an event last happened (ms since the epoch; 0 when it carries no time). */
function eventTime(event: CoreV1Event): number {
  const at = event.lastTimestamp ?? event.eventTime ?? event.firstTimestamp;
  return at ? new Date(at).getTime() : 0;
}

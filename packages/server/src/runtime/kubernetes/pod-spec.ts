import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import { IDLE_COMMAND, KEPT_CAPABILITIES } from '../container-policy.js';
import type { SandboxSpec } from '../runtime.js';

/** Label holding the Corral sandbox id on every object the driver creates. */
export const LABEL_SANDBOX_ID = 'corral.dev/sandbox-id';
/** Label holding the driver instance (`CORRAL_INSTANCE_ID`); `list()` and the watch select on it. */
export const LABEL_INSTANCE = 'corral.dev/instance';
/** The one container of a sandbox Pod. */
export const SANDBOX_CONTAINER = 'sandbox';
/** The driver's scratch directory inside every sandbox (an emptyDir): large commands and scripts pass through it. */
export const HELPER_DIR = '/.corral';
/** The helper binary (`corral-agent`, from a ConfigMap mounted read-only at `/.corral/bin`). */
export const HELPER_PATH = `${HELPER_DIR}/bin/corral-agent`;
/** The TCP port `corral-agent init` (PID 1 of every sandbox Pod) listens on, on every address of the Pod. */
export const AGENT_PORT = 61000;
/**
 * The key of the sandbox's env Secret (and so the environment variable) holding its agent's
 * secret; the agent removes it before it starts anything, and `corral-agent exec` removes it too.
 */
export const AGENT_SECRET_ENV = 'CORRAL_AGENT_SECRET';

/** What the Pod builder needs besides the sandbox spec. */
export interface PodOptions {
  instance: string;
  namespace: string;
  /** `runtimeClassName` (gVisor, Kata…); null: the cluster's default. */
  runtimeClass: string | null;
  /** Name of the Secret holding the spec's env and the agent's secret ({@link buildEnvSecret}). */
  envSecret: string;
  /** Name of the docker-registry Secret for the image pull, or null. */
  pullSecret: string | null;
  /** CPU request as a fraction of the limit (1: requests = limits; less lets a node hold more idle sandboxes). */
  cpuRequestFraction: number;
  /** The ConfigMap holding the helper binary (`corral-agent`). */
  helperConfigMap: string;
  /** The sandbox's /etc/resolv.conf ({@link serverResolvConf}); null: the kubelet's (a writable mount of a node file). */
  resolvConf: string | null;
}

/** Annotations whose values the Pod's read-only /etc files are (a downward API volume). */
const ETC_ANNOTATIONS = { hosts: 'corral.dev/etc-hosts', hostname: 'corral.dev/etc-hostname', 'resolv.conf': 'corral.dev/etc-resolv-conf' } as const;

/**
 * A resolv.conf for sandboxes from the server's own (`text`): its nameservers but loopback ones
 * (which would be the sandbox's own loopback), its search and options lines; null when no
 * nameserver is left (then the kubelet writes the sandbox's).
 */
export function serverResolvConf(text: string): string | null {
  const lines = text.split('\n').map((l) => l.trim());
  const servers = lines.filter((l) => /^nameserver\s+/.test(l) && !/^nameserver\s+(127\.|::1$|0\.0\.0\.0)/.test(l));
  if (servers.length === 0) return null;
  return [...servers, ...lines.filter((l) => /^(search|domain|options)\s+/.test(l))].join('\n') + '\n';
}

/**
 * A DNS-1123 label made from a sandbox id (lowercase letters, digits and `-`, at most 63
 * characters): the Pod's name and the driver's runtime id.
 */
export function podName(sandboxId: string): string {
  const clean = sandboxId.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '');
  return `corral-${clean}`.slice(0, 63).replace(/-+$/, '');
}

/** The Secret holding a sandbox's environment (variables and secrets, as the spec merges them). */
export function envSecretName(runtimeId: string): string {
  return `${runtimeId}-env`.slice(0, 253);
}

/** The docker-registry Secret holding a sandbox's image pull credentials. */
export function pullSecretName(runtimeId: string): string {
  return `${runtimeId}-pull`.slice(0, 253);
}

/** A label value (at most 63 characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends). */
export function labelValue(text: string): string {
  return text.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '') || 'x';
}

/**
 * Whether the sandbox's Pod keeps its network interface: not without network access, nor with an
 * empty allow list (no egress at all must not depend on the cluster enforcing NetworkPolicies).
 */
export function hasNetworkInterface(spec: SandboxSpec): boolean {
  return spec.networkAccess && spec.egress?.allowlist?.length !== 0;
}

/** Kubernetes quantity of CPU in millicores (at least 1m). */
export function cpuQuantity(cores: number): string {
  return `${Math.max(1, Math.round(cores * 1000))}m`;
}

/**
 * The Secret that carries `env` into the Pod (`envFrom`), so values never appear in the Pod spec,
 * with the agent's secret as {@link AGENT_SECRET_ENV} (it wins over a variable of that name in `env`).
 */
export function buildEnvSecret(spec: SandboxSpec, name: string, options: Pick<PodOptions, 'instance' | 'namespace'>, agentSecret: string): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: options.namespace, labels: labels(spec.sandboxId, options.instance) },
    type: 'Opaque',
    stringData: { ...spec.env, [AGENT_SECRET_ENV]: agentSecret },
  };
}

/** A `kubernetes.io/dockerconfigjson` Secret for the spec's registry credentials. */
export function buildPullSecret(spec: SandboxSpec, name: string, options: Pick<PodOptions, 'instance' | 'namespace'>): V1Secret | null {
  const auth = spec.registryAuth;
  if (!auth) return null;
  const config = {
    auths: {
      [auth.serverAddress]: {
        username: auth.username,
        password: auth.password,
        auth: Buffer.from(`${auth.username}:${auth.password}`).toString('base64'),
      },
    },
  };
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: options.namespace, labels: labels(spec.sandboxId, options.instance) },
    type: 'kubernetes.io/dockerconfigjson',
    stringData: { '.dockerconfigjson': JSON.stringify(config) },
  };
}

function labels(sandboxId: string, instance: string): Record<string, string> {
  return { [LABEL_SANDBOX_ID]: labelValue(sandboxId), [LABEL_INSTANCE]: labelValue(instance), 'app.kubernetes.io/managed-by': 'corral' };
}

/**
 * The Pod of one sandbox: one container whose PID 1 is `corral-agent init` (listening on
 * {@link AGENT_PORT} for authenticated exec sessions) running the start command (or the idle
 * command) under `/bin/sh -c`, `restartPolicy: Never`, limits from the spec's CPU and memory (requests equal, CPU's
 * scaled by `cpuRequestFraction`),
 * `ephemeral-storage` from its disk, every capability dropped but the documented set, the
 * runtime's default seccomp profile, no privilege escalation, no service account token, env from a
 * Secret, and an emptyDir at {@link HELPER_DIR} for the driver's exec helper.
 */
export function buildPod(spec: SandboxSpec, name: string, options: PodOptions): V1Pod {
  const hostname = `sandbox-${name.replace(/^corral-/, '')}`.slice(0, 63).replace(/-+$/, '');
  const etc: Record<string, string> = {
    hosts: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`,
    hostname: `${hostname}\n`,
    ...(options.resolvConf !== null ? { 'resolv.conf': options.resolvConf } : {}),
  };
  const etcFiles = Object.keys(etc) as (keyof typeof ETC_ANNOTATIONS)[];
  const limits = {
    cpu: cpuQuantity(spec.cpuCores),
    memory: String(spec.memoryBytes),
    'ephemeral-storage': String(spec.diskBytes),
  };
  const requests = { ...limits, cpu: cpuQuantity(spec.cpuCores * options.cpuRequestFraction) };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: options.namespace,
      labels: labels(spec.sandboxId, options.instance),
      annotations: {
        'corral.dev/sandbox-id': spec.sandboxId,
        'corral.dev/network-access': String(hasNetworkInterface(spec)),
        ...Object.fromEntries(etcFiles.map((file) => [ETC_ANNOTATIONS[file], etc[file] ?? ''])),
      },
    },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      hostname,
      terminationGracePeriodSeconds: 2,
      ...(options.runtimeClass ? { runtimeClassName: options.runtimeClass } : {}),
      ...(options.pullSecret ? { imagePullSecrets: [{ name: options.pullSecret }] } : {}),
      securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
      volumes: [
        { name: 'corral', emptyDir: { sizeLimit: '64Mi' } },
        { name: 'corral-bin', configMap: { name: options.helperConfigMap, defaultMode: 0o755 } },
        { name: 'corral-etc', downwardAPI: { items: etcFiles.map((file) => ({ path: file, fieldRef: { fieldPath: `metadata.annotations['${ETC_ANNOTATIONS[file]}']` } })) } },
      ],
      // Without network access (or with an empty allow list) the Pod keeps only loopback: an init container, the only one with
      // CAP_NET_ADMIN, deletes its other interfaces (the helper is static: any image runs it).
      ...(hasNetworkInterface(spec)
        ? {}
        : {
            initContainers: [
              {
                name: 'corral-netdown',
                image: spec.image,
                imagePullPolicy: 'Always',
                command: [HELPER_PATH, 'netdown'],
                resources: { requests: { ...requests, cpu: '1m' }, limits },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  privileged: false,
                  capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
                  seccompProfile: { type: 'RuntimeDefault' },
                },
                volumeMounts: [{ name: 'corral-bin', mountPath: `${HELPER_DIR}/bin`, readOnly: true }],
              },
            ],
          }),
      containers: [
        {
          name: SANDBOX_CONTAINER,
          image: spec.image,
          // Always: the kubelet asks the registry, with this Pod's pull secret, on every start (a
          // manifest check when the node holds the layers). With IfNotPresent a node that pulled a
          // private image for one caller would run it for any other caller without credentials.
          imagePullPolicy: 'Always',
          command: [HELPER_PATH, 'init', `--listen-tcp=${AGENT_PORT}`, `--secret-env=${AGENT_SECRET_ENV}`, '--', '/bin/sh', '-c', spec.startCommand ?? IDLE_COMMAND],
          envFrom: [{ secretRef: { name: options.envSecret } }],
          resources: { requests, limits },
          securityContext: {
            allowPrivilegeEscalation: false,
            privileged: false,
            capabilities: { drop: ['ALL'], add: [...KEPT_CAPABILITIES] },
            seccompProfile: { type: 'RuntimeDefault' },
          },
          // Read-only /etc files of the Pod's own: the kubelet and the container runtime mount none
          // at a path the container mounts itself (theirs are writable files on the node's disk).
          volumeMounts: [
            { name: 'corral', mountPath: HELPER_DIR },
            { name: 'corral-bin', mountPath: `${HELPER_DIR}/bin`, readOnly: true },
            ...etcFiles.map((file) => ({ name: 'corral-etc', mountPath: `/etc/${file}`, subPath: file, readOnly: true })),
          ],
        },
      ],
    },
  };
}

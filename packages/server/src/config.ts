import { readFileSync } from 'node:fs';
import { availableParallelism, homedir, hostname } from 'node:os';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';

/**
 * The netfilter log group the firewall sends connection attempts to (`log group <G>`) when
 * `CORRAL_EGRESS_NFLOG_GROUP` is not set; the connection logger (nflog-reader.ts) reads it. A
 * group has one reader per network namespace, so servers sharing a host need different groups.
 */
export const DEFAULT_NFLOG_GROUP = 1637;

/** Which runtime driver starts sandboxes. `none` stores sandboxes but never starts them (they stay PENDING). */
/** The names `CORRAL_RUNTIME` takes: each driver's (see runtime/create-runtime.ts), and `none`. */
export const RUNTIME_DRIVER_NAMES = ['docker', 'oci', 'kubernetes', 'none'] as const;

export type RuntimeDriverName = (typeof RUNTIME_DRIVER_NAMES)[number];

/** Pods by namespace and labels (`CORRAL_K8S_SERVER_PODS`). */
export interface K8sPodSelector {
  namespace: string;
  labels: Record<string, string>;
}

/** The server's whole configuration. */
export interface CorralConfig {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl: string | null;
  publicUrl: string | null;
  runtime: RuntimeDriverName;
  dockerHost: string | null;
  ociRuntime: string;
  /** The CRIU binary memory checkpoints use (oci driver with runc). */
  criu: string;
  /** User namespace of oci sandboxes: `auto` (on where the host allows it), `off`, or an explicit host id range (required). */
  ociUserns: 'auto' | 'off' | { hostUid: number; hostGid: number; size: number };
  /** Namespaces and disks the oci driver keeps ready ahead of creates. */
  ociPoolSize: number;
  ociWarmPoolMax: number;
  /**
   * CPU weight (cgroup v2 scale, 1–10000, 100 = a default cgroup's) of the cgroup all sandboxes sit
   * under (oci: `/corral-oci`; docker: the containers' cgroup parent), below the server's so a
   * saturated host still serves the control plane; null (`off`): leave it alone.
   */
  sandboxCpuWeight: number | null;
  /** Namespace of the kubernetes driver's sandbox Pods and Secrets (created when missing). */
  k8sNamespace: string;
  /** `runtimeClassName` of sandbox Pods (gVisor, Kata…); null: the cluster's default. */
  k8sRuntimeClass: string | null;
  /** `required`: a NetworkPolicy per sandbox (egress policy, ingress only from the server), or the sandbox does not start; `off`: none, and egress policies are refused. */
  k8sNetworkPolicy: 'required' | 'off';
  /** CIDRs the server connects to sandbox Pods from (when it runs outside the cluster or on the host network). */
  k8sServerCidrs: string[];
  /** The server's own Pods, when it runs in the cluster: their namespace and labels; null: none. */
  k8sServerPods: K8sPodSelector | null;
  /** CIDRs no sandbox may reach, besides the private, link-local and reserved ranges always closed. */
  k8sBlockedCidrs: string[];
  /**
   * How the kubernetes driver runs processes: `agent` (TCP to the sandbox's PID 1 at its Pod IP),
   * `api` (the API server's exec), `auto` (the agent, falling back to the API per sandbox).
   */
  k8sExec: 'auto' | 'agent' | 'api';
  /**
   * Where the kubernetes driver publishes built images (`host[:port]/prefix`): set, image builds run
   * on the server's host (buildah) and each result is pushed to `<prefix>/<owner>/<name>:<tag>`;
   * null: the kubernetes driver has no image builds.
   */
  k8sImageRegistry: string | null;
  /** User name for {@link k8sImageRegistry} (pushes, deletes and the sandbox Pods' pulls); null: anonymous. */
  k8sImageRegistryUsername: string | null;
  /** Password for {@link k8sImageRegistry}; set with the user name or not at all. */
  k8sImageRegistryPassword: string | null;
  /** DNS server (`address[:port]`) the egress resolver forwards allowed names to; null: the host's first nameserver. */
  egressDnsUpstream: string | null;
  /** Seconds a resolved address stays open at least, whatever the answer's TTL. */
  egressTtlFloorSeconds: number;
  /**
   * The deployment's name: stamped on every container it creates, shared by all its replicas (they
   * reconcile and serve each other's sandboxes).
   */
  instanceId: string;
  /** This process's name among the deployment's replicas; default `<hostname>-<pid>`. */
  replicaId: string;
  /** How long a replica's heartbeat (and the reconciler's leader lease) lasts unrenewed, ms; renewed every quarter of it. */
  replicaLeaseMs: number;
  bootstrapApiKey: string | null;
  rateLimits: boolean;
  reconcileIntervalMs: number;
  logLevel: string;
  gatewaySecret: string | null;
  gatewayTokenTtlSeconds: number;
  maxExecTimeoutSeconds: number;
  logsMaxBytes: number;
  pidsLimit: number;
  terminatedRetentionHours: number;
  /** Hours a checkpoint is kept before it is deleted; 0: kept until deleted (docs/checkpoints.md). */
  checkpointRetentionHours: number;
  /** Most checkpoints one user may hold (every state but FAILED); 0: no limit. */
  maxCheckpointsPerUser: number;
  /**
   * Who may scrape `GET /metrics`: `loopback` (requests from 127.0.0.1 or ::1 only), `key` (an admin
   * API key or `metricsKey` as a bearer), `open` (anyone), `off` (no such route).
   */
  metrics: 'loopback' | 'key' | 'open' | 'off';
  /** A bearer that may scrape `/metrics` when `metrics` is `key` (besides admin API keys); null: admin keys only. */
  metricsKey: string | null;
  /** Whether `GET /` serves the web dashboard (docs/dashboard.md). */
  dashboard: boolean;
  /** Directory of the built dashboard (index.html, assets/); null: the one built into this package (dist/dashboard). */
  dashboardDir: string | null;
  /** Most bytes of stdout, and separately of stderr, one gateway exec returns; the rest is dropped with a marker. */
  execOutputMaxBytes: number;
  /** Largest gateway exec request body (the command is inside it), bytes. */
  execMaxRequestBytes: number;
  /** Most gateway operations (exec, file transfers, read-file) running in sandboxes at once; more wait in a queue. */
  maxConcurrentExecs: number;
  /** Most gateway operations of one user (a sandbox's owner) running at once; more wait, served round-robin between users. */
  maxExecsPerUser: number;
  /** Most gateway operations of one sandbox running at once. */
  maxExecsPerSandbox: number;
  /** Gateway operations one sandbox runs at once per CPU core it has (rounded up, at least 1, at most maxExecsPerSandbox); 0: no per-core bound. */
  execsPerCpu: number;
  /** Most gateway operations (or sessions) one user may have waiting for a slot; more are answered 429. */
  maxQueuedPerUser: number;
  /** Most open streaming sessions (WebSocket `stream`, Connect `Start`) of one user; they have their own pool of maxConcurrentExecs slots. */
  maxSessionsPerUser: number;
  /** Most open streaming sessions of one sandbox. */
  maxSessionsPerSandbox: number;
  /** Gateway requests per second per user (token bucket, when rateLimits is on). */
  gatewayRateLimit: number;
  /** Gateway requests one user may make at once before gatewayRateLimit applies. */
  gatewayRateBurst: number;
  /** Most exec output bytes held in memory across every in-flight gateway exec; past it output is dropped with a marker. */
  execOutputBudgetBytes: number;
  /** Most of execOutputBudgetBytes one user's in-flight execs may hold. */
  execOutputBudgetPerUserBytes: number;
  /** An upload, download or read-file that moves no byte to or from its client for this long is cut, seconds. */
  transferIdleTimeoutSeconds: number;
  /** Exposures and tunnels are served at `<id>.<proxyDomain>`; `localhost` works without DNS since `*.localhost` is loopback. */
  proxyDomain: string;
  /** Host name clients use for TCP exposures and SSH sessions. Null: the host of publicUrl, else `host`. */
  networkHost: string | null;
  /** First and last external port of TCP exposures, `from-to`. */
  tcpPortRange: string;
  /** Port of Corral's SSH server for SSH sessions; 0 picks a free one. */
  sshPort: number;
  /** NFLOG group egress rules log connection attempts to, read by the egress connection log; one reader per group and host. */
  egressNflogGroup: number;
  /** PEM certificate and key files; when both are set, exposures and tunnels are also served over HTTPS on proxyTlsPort. */
  proxyTlsCert: string | null;
  proxyTlsKey: string | null;
  proxyTlsPort: number;
  /** How long a tunnel lives, seconds. */
  tunnelTtlSeconds: number;
  /** Most tunnels (not yet expired) one user may hold. */
  maxTunnelsPerUser: number;
  /** Most sandboxes being provisioned (runtime.create) at once; later creates wait, PENDING, in arrival order. */
  maxConcurrentProvisioning: number;
  /** GiB kept free on the filesystem of sandbox disks: a create whose disk would eat into it is refused. */
  diskReserveGb: number;
  /**
   * Overcommit factor of the sparse sandbox disks: the space existing disks could still grow by,
   * divided by this, must fit in free space beside the new disk. 0: only the new disk must fit.
   */
  diskOvercommit: number;
  /** Default per-user quota over active sandboxes (null: no limit); server admins have none unless set for them. */
  quotaSandboxes: number | null;
  quotaCpuCores: number | null;
  quotaMemoryGb: number | null;
  quotaDiskGb: number | null;
  /** Default per-team quota over the team's active sandboxes (null: no limit). */
  teamQuotaSandboxes: number | null;
  teamQuotaCpuCores: number | null;
  teamQuotaMemoryGb: number | null;
  teamQuotaDiskGb: number | null;
  /** Registries (`host[:port]`) pulls may reach over plain HTTP and at loopback, private or link-local addresses. */
  registryInsecure: string[];
  /** Most bytes one image pull may download, and separately unpack (oci driver). */
  imageMaxBytes: number;
  /** Builds that run at once; more wait in a queue (oci driver). */
  imageBuildConcurrency: number;
  /** CPU cores one build may use. */
  imageBuildCpus: number;
  /** Memory one build may use, MiB. */
  imageBuildMemoryMb: number;
  /** Size of each owner's build disk, GiB: what one build writes plus the base images and layer cache kept between builds. */
  imageBuildDiskGb: number;
  /** Longest a build may run, seconds. */
  imageBuildTimeoutSeconds: number;
  /** Whether `RUN` steps of builds get network. */
  imageBuildNetwork: boolean;
  /** Largest build context upload, bytes. */
  imageBuildContextMaxBytes: number;
  /** How long an upload URL is valid, seconds. */
  imageBuildUploadTtlSeconds: number;
  /** Longest time `POST /sandbox` holds its answer while the sandbox provisions, ms; 0 answers at once (PENDING). */
  createWaitMs: number;
  /** Webhook URLs may name (or resolve to) loopback, private, link-local and metadata addresses. */
  webhookAllowPrivate: boolean;
  /** Longest one webhook delivery attempt may take. */
  webhookTimeoutMs: number;
  /** Attempts of one delivery before it is given up (status `failed`). */
  webhookMaxAttempts: number;
  /** Wait before the first retry; each later retry waits twice as long (with jitter), up to an hour. */
  webhookRetryBaseMs: number;
  /** CPU cores of the host kept for the server and the host itself; sandboxes' capacity is the rest. */
  reserveCpu: number;
  /** GB of the host's memory kept for the server and the host itself; sandboxes' capacity is the rest. */
  reserveMemoryGb: number;
  /** How far the sum of active sandboxes' `cpu_cores` may exceed the CPU capacity (a factor). */
  overcommitCpu: number;
  /** How far the sum of active sandboxes' `memory_gb` may exceed the memory capacity (a factor). */
  overcommitMemory: number;
  /** Most creates waiting for capacity (or a provisioning slot) server-wide; more are answered 429. */
  admissionQueueMax: number;
  /** Most of them one user may have waiting; more are answered 429. */
  admissionQueueMaxPerUser: number;
}

/**
 * The data directory when none is configured: `/var/lib/corral` for root (a system service), else
 * `$XDG_DATA_HOME/corral` (default `~/.local/share/corral`).
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.()): string {
  if (uid === 0) return '/var/lib/corral';
  const xdg = env.XDG_DATA_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.local', 'share'), 'corral');
}

type Parser = (raw: string, name: string) => unknown;

interface Setting {
  key: keyof CorralConfig;
  env: string;
  description: string;
  /** Shown in `--help`. */
  defaultText: string;
  parse: Parser;
}

const text: Parser = (raw) => raw;
const optionalText: Parser = (raw) => (raw === '' ? null : raw);
function integer(min: number, max: number): Parser {
  return (raw, name) => {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
    }
    return value;
  };
}
function oneOf(...values: string[]): Parser {
  return (raw, name) => {
    if (!values.includes(raw)) throw new Error(`${name} must be one of ${values.join(', ')}, got "${raw}"`);
    return raw;
  };
}
/** A quota default: a number from 0 up, or `unlimited` (also -1) for no limit. */
function quota(integerOnly: boolean): Parser {
  return (raw, name) => {
    if (raw === 'unlimited' || raw === '-1') return null;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0 || (integerOnly && !Number.isInteger(value))) {
      throw new Error(`${name} must be ${integerOnly ? 'an integer' : 'a number'} from 0 up, or unlimited, got "${raw}"`);
    }
    return value;
  };
}
/** A decimal number from `min` to `max`. */
function decimal(min: number, max: number): Parser {
  return (raw, name) => {
    const value = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(value) || value < min || value > max) {
      throw new Error(`${name} must be a number from ${min} to ${max}, got "${raw}"`);
    }
    return value;
  };
}
const portRange: Parser = (raw, name) => {
  const match = /^(\d+)-(\d+)$/.exec(raw.trim());
  const from = Number(match?.[1]);
  const to = Number(match?.[2]);
  if (!match || from < 1 || to > 65535 || from > to) throw new Error(`${name} must be a port range like 30000-30999, got "${raw}"`);
  return `${from}-${to}`;
};
const usernsMode: Parser = (raw, name) => {
  if (raw === 'auto' || raw === 'off') return raw;
  const match = /^(\d+):(\d+):(\d+)$/.exec(raw.trim());
  const [hostUid, hostGid, size] = [match?.[1], match?.[2], match?.[3]].map(Number) as [number, number, number];
  if (!match || hostUid < 1 || hostGid < 1 || size < 1 || hostUid + size > 0xffffffff || hostGid + size > 0xffffffff) {
    throw new Error(`${name} must be auto, off, or <hostUid>:<hostGid>:<size> (non-zero ids), got "${raw}"`);
  }
  return { hostUid, hostGid, size };
};
const hostList: Parser = (raw, name) => {
  const hosts = raw.split(',').map((h) => h.trim().toLowerCase()).filter((h) => h !== '');
  for (const host of hosts) {
    if (!/^(?:[a-z0-9]([a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/.test(host)) {
      throw new Error(`${name} must be a comma-separated list of registry hosts like 127.0.0.1:5000 or registry.internal, got "${host}"`);
    }
  }
  return hosts;
};
/** A Kubernetes object name that is a DNS-1123 label (namespaces, runtime classes). */
const dnsLabel: Parser = (raw, name) => {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(raw)) throw new Error(`${name} must be a DNS-1123 label (lowercase letters, digits and -, at most 63), got "${raw}"`);
  return raw;
};
const optionalWeight: Parser = (raw, name) => (raw.toLowerCase() === 'off' ? null : integer(1, 10_000)(raw, name));
const optionalDnsLabel: Parser = (raw, name) => (raw === '' ? null : dnsLabel(raw, name));
/** A comma-separated list of IPv4/IPv6 CIDRs (a bare address is a /32 or /128). */
const cidrList: Parser = (raw, name) => {
  const cidrs = raw.split(',').map((c) => c.trim()).filter((c) => c !== '');
  return cidrs.map((cidr) => {
    const [address = '', prefixText, extra] = cidr.split('/');
    const family = isIP(address);
    const max = family === 6 ? 128 : 32;
    const prefix = prefixText === undefined ? max : Number(prefixText);
    if (family === 0 || extra !== undefined || !/^\d{1,3}$/.test(prefixText ?? String(max)) || prefix > max) {
      throw new Error(`${name} must be a comma-separated list of CIDRs like 10.0.0.5/32, got "${cidr}"`);
    }
    return `${address}/${prefix}`;
  });
};
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
/** `<namespace>/<key>=<value>[,<key>=<value>…]`: Pods with those labels in that namespace. */
const podSelector: Parser = (raw, name) => {
  if (raw === '') return null;
  const slash = raw.indexOf('/');
  const namespace = raw.slice(0, slash);
  const labels: Record<string, string> = {};
  const problem = `${name} must be <namespace>/<key>=<value>[,<key>=<value>…] (e.g. corral/app.kubernetes.io/name=corral), got "${raw}"`;
  if (slash < 1 || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(namespace)) throw new Error(problem);
  for (const pair of raw.slice(slash + 1).split(',')) {
    const eq = pair.indexOf('=');
    const key = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (eq < 1 || !LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) throw new Error(problem);
    labels[key] = value;
  }
  return { namespace, labels };
};
/** `host[:port]/path`: a registry host and a repository path (lower-case components) under it. */
const registryPrefix: Parser = (raw, name) => {
  if (raw === '') return null;
  const text = raw.trim().replace(/\/+$/, '');
  const slash = text.indexOf('/');
  const host = text.slice(0, slash).toLowerCase();
  const path = text.slice(slash + 1);
  if (
    slash < 1 ||
    !/^(?:[a-z0-9]([a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/.test(host) ||
    !/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/.test(path)
  ) {
    throw new Error(`${name} must be a registry host and a repository path under it, host[:port]/prefix (e.g. registry.internal:5000/corral-built), got "${raw}"`);
  }
  return `${host}/${path}`;
};
const onOff: Parser = (raw, name) => {
  if (['1', 'true', 'on', 'yes'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'off', 'no'].includes(raw.toLowerCase())) return false;
  throw new Error(`${name} must be on or off, got "${raw}"`);
};

/** Every setting, its environment variable and its default. `corral serve --help` prints this table. */
export const SETTINGS: readonly Setting[] = [
  { key: 'host', env: 'CORRAL_HOST', description: 'Address the API listens on', defaultText: '127.0.0.1', parse: text },
  { key: 'port', env: 'CORRAL_PORT', description: 'Port the API listens on (0 picks a free port)', defaultText: '8080', parse: integer(0, 65535) },
  { key: 'dataDir', env: 'CORRAL_DATA_DIR', description: 'Directory for the SQLite store, server secrets and sandbox state; kept 0700 (its files 0600)', defaultText: '/var/lib/corral as root, else $XDG_DATA_HOME/corral (~/.local/share/corral)', parse: text },
  { key: 'databaseUrl', env: 'DATABASE_URL', description: 'PostgreSQL URL; when set, replaces the embedded SQLite store', defaultText: '(unset: SQLite)', parse: optionalText },
  { key: 'publicUrl', env: 'CORRAL_PUBLIC_URL', description: 'Absolute URL clients use to reach this server (gateway_url is built from it)', defaultText: 'http://<host>:<port>', parse: optionalText },
  { key: 'runtime', env: 'CORRAL_RUNTIME', description: 'Runtime driver: docker, oci (daemonless runc/crun), kubernetes (one Pod per sandbox; KUBECONFIG or in-cluster), or none (sandboxes are stored but never started)', defaultText: 'oci', parse: oneOf(...RUNTIME_DRIVER_NAMES) },
  { key: 'ociRuntime', env: 'CORRAL_OCI_RUNTIME', description: 'OCI runtime binary the oci driver calls: runc, or crun (faster; needs scripts/ensure-oci.sh --crun; no memory checkpoints: it is built without CRIU)', defaultText: 'runc', parse: oneOf('runc', 'crun') },
  { key: 'criu', env: 'CORRAL_CRIU', description: "CRIU binary for memory checkpoints on the oci driver with runc: the one scripts/ensure-criu.sh builds and prints (CRIU 4.1.1 with the patches in scripts/criu/; Debian 12's criu fails on kernels from 6.13)", defaultText: 'criu', parse: text },
  { key: 'ociUserns', env: 'CORRAL_OCI_USERNS', description: 'Root in oci sandboxes is an unprivileged host id: auto (on where the host allows it; the default range is 1879048192:1879048192:65536), off, or <hostUid>:<hostGid>:<size> (required)', defaultText: 'auto', parse: usernsMode },
  { key: 'ociPoolSize', env: 'CORRAL_OCI_POOL_SIZE', description: 'Network namespaces (of each kind) and formatted disks (of each recent size) the oci driver keeps ready ahead of creates; set it near your largest burst of creates', defaultText: '8', parse: integer(0, 4096) },
  { key: 'ociWarmPoolMax', env: 'CORRAL_OCI_WARM_POOL_MAX', description: 'Most sandboxes the oci driver keeps started ahead of creates (for the most used image, idle start command, network kind and disk size; as many per kind as it had creates in the last 5 minutes); 0 (the default, until claims are proven under load) disables', defaultText: '0', parse: integer(0, 4096) },
  { key: 'sandboxCpuWeight', env: 'CORRAL_SANDBOX_CPU_WEIGHT', description: "CPU weight of the cgroup all sandboxes sit under (oci: /corral-oci, shared by the host's instances; docker: the containers' cgroup parent /corral-docker, or corral.slice with the systemd cgroup driver), on cgroup v2's 1–10000 scale where 100 is every other cgroup's (v1 cpu.shares = weight × 1024 / 100). A share, not a limit: sandboxes still use idle CPUs and keep their own limits, but on a saturated host the server (management calls, /healthz, the gateway) is scheduled first. off: leave the weight (and, on docker, Docker's default parent) alone", defaultText: '10', parse: optionalWeight },
  { key: 'k8sNamespace', env: 'CORRAL_K8S_NAMESPACE', description: 'Namespace of the kubernetes driver\'s sandbox Pods and Secrets (created when missing); the cluster is the one KUBECONFIG names, else the in-cluster service account, else ~/.kube/config', defaultText: 'corral-sandboxes', parse: dnsLabel },
  { key: 'k8sExec', env: 'CORRAL_K8S_EXEC', description: 'How the kubernetes driver runs commands in sandboxes with network access: agent (TCP to corral-agent, PID 1 of the Pod, at the Pod IP, authenticated with a per-sandbox secret), api (the API server\'s exec), or auto (the agent; a sandbox whose agent does not answer within 2 s falls back to the API). Sandboxes without network access always use the API', defaultText: 'auto', parse: oneOf('auto', 'agent', 'api') },
  { key: 'k8sRuntimeClass', env: 'CORRAL_K8S_RUNTIME_CLASS', description: 'runtimeClassName of the kubernetes driver\'s sandbox Pods (gVisor, Kata… for stronger isolation)', defaultText: "(unset: the cluster's default)", parse: optionalDnsLabel },
  { key: 'k8sNetworkPolicy', env: 'CORRAL_K8S_NETWORK_POLICY', description: 'required: every kubernetes sandbox gets a NetworkPolicy (its egress policy; ingress only from the server) before its Pod, or does not start — enforced only where the cluster\'s network plugin enforces NetworkPolicies; off: none, sandboxes are not kept apart and egress policies are refused (422)', defaultText: 'required', parse: oneOf('required', 'off') },
  { key: 'k8sServerCidrs', env: 'CORRAL_K8S_SERVER_CIDRS', description: 'Comma-separated CIDRs the server connects to sandbox Pods from (exposures, SSH, the agent), when it runs outside the cluster or on the host network; the only ingress sandbox NetworkPolicies allow besides CORRAL_K8S_SERVER_PODS', defaultText: '(none)', parse: cidrList },
  { key: 'k8sServerPods', env: 'CORRAL_K8S_SERVER_PODS', description: 'The server\'s Pods when it runs in the cluster, <namespace>/<key>=<value>[,…] (the namespace is matched by its kubernetes.io/metadata.name label, set by Kubernetes ≥ 1.21; label it yourself on older clusters); sandbox NetworkPolicies allow ingress from them', defaultText: '(none)', parse: podSelector },
  { key: 'k8sImageRegistry', env: 'CORRAL_K8S_IMAGE_REGISTRY', description: 'Where the kubernetes driver publishes built images, host[:port]/prefix (e.g. registry.internal:5000/corral-built): set, Dockerfile builds and transfers run on the server\'s host (buildah, as on the oci driver) and each image is pushed to <prefix>/<owner>/<name>:<tag>, which sandboxes of corral.local/<owner>/<name>:<tag> pull; references under the prefix\'s path are refused in docker_image, FROM and source_image (on any registry host). TLS is verified unless the host is in CORRAL_REGISTRY_INSECURE. Unset: no image builds on the kubernetes driver (501)', defaultText: '(unset)', parse: registryPrefix },
  { key: 'k8sImageRegistryUsername', env: 'CORRAL_K8S_IMAGE_REGISTRY_USERNAME', description: 'User name for CORRAL_K8S_IMAGE_REGISTRY (pushes, deletes, and the pull Secret of sandbox Pods of built images)', defaultText: '(unset: anonymous)', parse: optionalText },
  { key: 'k8sImageRegistryPassword', env: 'CORRAL_K8S_IMAGE_REGISTRY_PASSWORD', description: 'Password for CORRAL_K8S_IMAGE_REGISTRY; set with the user name', defaultText: '(unset)', parse: optionalText },
  { key: 'k8sBlockedCidrs', env: 'CORRAL_K8S_BLOCKED_CIDRS', description: 'Comma-separated CIDRs no kubernetes sandbox may reach, besides the private (RFC 1918), CGNAT, loopback, link-local (metadata) and reserved IPv4 ranges that are always closed (e.g. public addresses of your nodes)', defaultText: '(none)', parse: cidrList },
  { key: 'egressDnsUpstream', env: 'CORRAL_EGRESS_DNS_UPSTREAM', description: "DNS server (address[:port]) the sandboxes' resolver forwards names their egress policy allows to", defaultText: "(the host's first nameserver in /etc/resolv.conf)", parse: optionalText },
  { key: 'egressTtlFloorSeconds', env: 'CORRAL_EGRESS_TTL_FLOOR', description: 'Seconds an address an allowed name resolved to stays open at least, whatever the DNS answer\'s TTL', defaultText: '60', parse: integer(1, 86_400) },
  { key: 'dockerHost', env: 'DOCKER_HOST', description: 'Docker Engine endpoint for the docker driver', defaultText: 'unix:///var/run/docker.sock', parse: optionalText },
  { key: 'instanceId', env: 'CORRAL_INSTANCE_ID', description: 'Name of the deployment, stamped on every container it creates: replicas of one deployment share it (and a runtime the driver can share: kubernetes, or docker on one engine); separate servers sharing a host need different ones', defaultText: 'corral', parse: text },
  { key: 'replicaId', env: 'CORRAL_REPLICA_ID', description: 'Name of this process among the deployment\'s replicas (its heartbeat and provisioning leases in the store); unique per process', defaultText: '<hostname>-<pid>', parse: text },
  { key: 'replicaLeaseMs', env: 'CORRAL_REPLICA_LEASE_MS', description: 'How long a replica\'s heartbeat and the reconciler\'s leader lease last unrenewed (renewed every quarter of it); after it, another replica adopts a dead one\'s provisioning and reconciling', defaultText: '10000', parse: integer(1000, 600_000) },
  { key: 'bootstrapApiKey', env: 'CORRAL_BOOTSTRAP_API_KEY', description: 'When set, an admin API key with exactly this value exists after startup', defaultText: '(unset: the first start prints a new admin key)', parse: optionalText },
  { key: 'rateLimits', env: 'CORRAL_RATE_LIMITS', description: 'Enforce the Prime API rate limits per user, whichever key is used (and per sandbox)', defaultText: 'on', parse: onOff },
  { key: 'reconcileIntervalMs', env: 'CORRAL_RECONCILE_INTERVAL_MS', description: 'How often the reconciler checks timeouts and runtime state', defaultText: '2000', parse: integer(50, 600_000) },
  { key: 'logLevel', env: 'CORRAL_LOG_LEVEL', description: 'Log level: fatal, error, warn, info, debug, trace, silent', defaultText: 'info', parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent') },
  { key: 'gatewaySecret', env: 'CORRAL_GATEWAY_SECRET', description: 'Key that signs gateway tokens; replicas must share it', defaultText: '(generated once into the data dir)', parse: optionalText },
  { key: 'gatewayTokenTtlSeconds', env: 'CORRAL_GATEWAY_TOKEN_TTL', description: 'Lifetime of a gateway token, seconds', defaultText: '3600', parse: integer(60, 86_400) },
  { key: 'maxExecTimeoutSeconds', env: 'CORRAL_MAX_EXEC_TIMEOUT', description: 'Largest exec timeout a client may ask for, seconds', defaultText: '3600', parse: integer(1, 86_400 * 7) },
  { key: 'logsMaxBytes', env: 'CORRAL_LOGS_MAX_BYTES', description: 'Most bytes of start-command output returned by the logs endpoint', defaultText: '1048576', parse: integer(1024, 64 * 1024 * 1024) },
  { key: 'pidsLimit', env: 'CORRAL_PIDS_LIMIT', description: 'Most processes one sandbox may run', defaultText: '1024', parse: integer(16, 1_000_000) },
  { key: 'metrics', env: 'CORRAL_METRICS', description: 'Who may scrape GET /metrics (Prometheus text): loopback (requests from 127.0.0.1/::1 only), key (an admin API key or CORRAL_METRICS_KEY as a bearer), open, or off (no route)', defaultText: 'loopback', parse: oneOf('loopback', 'key', 'open', 'off') },
  { key: 'dashboard', env: 'CORRAL_DASHBOARD', description: 'Whether GET / serves the web dashboard (docs/dashboard.md)', defaultText: 'on', parse: onOff },
  { key: 'dashboardDir', env: 'CORRAL_DASHBOARD_DIR', description: 'Directory of a built dashboard (index.html and assets/) to serve instead of the one `npm run build` puts in packages/server/dist/dashboard', defaultText: '(the built-in one)', parse: optionalText },
  { key: 'metricsKey', env: 'CORRAL_METRICS_KEY', description: 'A bearer token that may scrape /metrics when CORRAL_METRICS=key, besides admin API keys', defaultText: '(unset: admin keys only)', parse: optionalText },
  { key: 'terminatedRetentionHours', env: 'CORRAL_RETENTION_HOURS', description: 'How long ended sandboxes stay readable before their rows are purged', defaultText: '168', parse: integer(1, 100_000) },
  { key: 'checkpointRetentionHours', env: 'CORRAL_CHECKPOINT_RETENTION_HOURS', description: 'Hours a checkpoint is kept before it is deleted (its data too); 0 keeps checkpoints until they are deleted', defaultText: '0', parse: integer(0, 100_000) },
  { key: 'maxCheckpointsPerUser', env: 'CORRAL_MAX_CHECKPOINTS_PER_USER', description: 'Most checkpoints one user may hold (failed ones aside); a new one past it is refused with 403 QUOTA_EXCEEDED; 0: no limit', defaultText: '1000', parse: integer(0, 1_000_000) },
  { key: 'execOutputMaxBytes', env: 'CORRAL_EXEC_OUTPUT_MAX_BYTES', description: 'Most bytes of stdout (and of stderr) one gateway exec returns; the rest is replaced by a truncation marker', defaultText: '16777216', parse: integer(1024, 1024 * 1024 * 1024) },
  { key: 'execMaxRequestBytes', env: 'CORRAL_EXEC_MAX_REQUEST_BYTES', description: 'Largest gateway exec request body, bytes (the command travels inside it)', defaultText: '16777216', parse: integer(64 * 1024, 1024 * 1024 * 1024) },
  { key: 'maxConcurrentExecs', env: 'CORRAL_MAX_CONCURRENT_EXECS', description: 'Most gateway operations running in sandboxes at once across the server; more wait in a queue', defaultText: '1024', parse: integer(1, 100_000) },
  { key: 'maxExecsPerUser', env: 'CORRAL_MAX_EXECS_PER_USER', description: 'Most gateway operations of one user (the sandbox owner) running at once; more wait, and free slots go round-robin between users', defaultText: '128', parse: integer(1, 100_000) },
  { key: 'maxExecsPerSandbox', env: 'CORRAL_MAX_EXECS_PER_SANDBOX', description: 'Most gateway operations of one sandbox running at once', defaultText: '32', parse: integer(1, 100_000) },
  { key: 'execsPerCpu', env: 'CORRAL_EXECS_PER_CPU', description: "Gateway operations one sandbox runs at once per CPU core of its cpu_cores (rounded up, at least 1, at most CORRAL_MAX_EXECS_PER_SANDBOX); more wait in its queue, and a command's timeout starts when it runs. 0: no per-core bound", defaultText: '8', parse: decimal(0, 10_000) },
  { key: 'maxQueuedPerUser', env: 'CORRAL_MAX_QUEUED_PER_USER', description: 'Most gateway operations (or sessions) of one user waiting for a slot; more are answered 429 with Retry-After', defaultText: '4096', parse: integer(0, 1_000_000) },
  { key: 'maxSessionsPerUser', env: 'CORRAL_MAX_SESSIONS_PER_USER', description: 'Most open streaming sessions (WebSocket stream, Connect Start) of one user; sessions have their own pool of CORRAL_MAX_CONCURRENT_EXECS slots, more wait', defaultText: '128', parse: integer(1, 100_000) },
  { key: 'maxSessionsPerSandbox', env: 'CORRAL_MAX_SESSIONS_PER_SANDBOX', description: 'Most open streaming sessions of one sandbox', defaultText: '32', parse: integer(1, 100_000) },
  { key: 'gatewayRateLimit', env: 'CORRAL_GATEWAY_RATE_LIMIT', description: 'Gateway requests per second per user (token bucket; applied when CORRAL_RATE_LIMITS is on); over it: 429 with Retry-After', defaultText: '200', parse: integer(1, 1_000_000) },
  { key: 'gatewayRateBurst', env: 'CORRAL_GATEWAY_RATE_BURST', description: 'Gateway requests one user may make at once before CORRAL_GATEWAY_RATE_LIMIT applies', defaultText: '2000', parse: integer(1, 10_000_000) },
  { key: 'execOutputBudgetBytes', env: 'CORRAL_EXEC_OUTPUT_BUDGET_BYTES', description: 'Most exec output bytes held in memory across all in-flight gateway execs; past it further output is dropped with a truncation marker', defaultText: '536870912', parse: integer(1024 * 1024, 64 * 1024 * 1024 * 1024) },
  { key: 'execOutputBudgetPerUserBytes', env: 'CORRAL_EXEC_OUTPUT_BUDGET_PER_USER_BYTES', description: "Most exec output bytes one user's in-flight gateway execs hold (a share of CORRAL_EXEC_OUTPUT_BUDGET_BYTES); past it that user's further output is dropped with a marker", defaultText: '33554432', parse: integer(1024 * 1024, 64 * 1024 * 1024 * 1024) },
  { key: 'transferIdleTimeoutSeconds', env: 'CORRAL_TRANSFER_IDLE_TIMEOUT', description: 'An upload, download or read-file that moves no byte to or from its client for this many seconds is cut', defaultText: '60', parse: integer(1, 86_400) },
  { key: 'proxyDomain', env: 'CORRAL_PROXY_DOMAIN', description: 'Domain of exposure and tunnel URLs (<id>.<domain>), served by Host header on the API port', defaultText: 'localhost', parse: text },
  { key: 'networkHost', env: 'CORRAL_NETWORK_HOST', description: 'Host name given to clients for TCP exposures and SSH sessions', defaultText: '(host of CORRAL_PUBLIC_URL, else CORRAL_HOST)', parse: optionalText },
  { key: 'tcpPortRange', env: 'CORRAL_TCP_PORT_RANGE', description: 'External ports for TCP exposures, from-to', defaultText: '30000-30999', parse: portRange },
  { key: 'sshPort', env: 'CORRAL_SSH_PORT', description: 'Port of the SSH server behind SSH sessions (0 picks a free port)', defaultText: '2222', parse: integer(0, 65535) },
  { key: 'egressNflogGroup', env: 'CORRAL_EGRESS_NFLOG_GROUP', description: 'NFLOG group (0-65535) that egress rules log connection attempts to for the egress log; a group has one reader per host, so servers sharing a host need different groups', defaultText: String(DEFAULT_NFLOG_GROUP), parse: integer(0, 65535) },
  { key: 'proxyTlsCert', env: 'CORRAL_PROXY_TLS_CERT', description: 'PEM certificate file; with CORRAL_PROXY_TLS_KEY, exposures and tunnels are also served over HTTPS', defaultText: '(unset: no TLS)', parse: optionalText },
  { key: 'proxyTlsKey', env: 'CORRAL_PROXY_TLS_KEY', description: 'PEM private key file for CORRAL_PROXY_TLS_CERT', defaultText: '(unset)', parse: optionalText },
  { key: 'proxyTlsPort', env: 'CORRAL_PROXY_TLS_PORT', description: 'Port of the HTTPS listener for exposures and tunnels (0 picks a free port)', defaultText: '8443', parse: integer(0, 65535) },
  { key: 'tunnelTtlSeconds', env: 'CORRAL_TUNNEL_TTL', description: 'How long a tunnel lives, seconds', defaultText: '86400', parse: integer(60, 86_400 * 30) },
  { key: 'maxTunnelsPerUser', env: 'CORRAL_MAX_TUNNELS_PER_USER', description: 'Most unexpired tunnels one user may hold', defaultText: '20', parse: integer(1, 10_000) },
  { key: 'maxConcurrentProvisioning', env: 'CORRAL_MAX_CONCURRENT_PROVISIONING', description: 'Most sandboxes provisioned at once; later creates stay PENDING in the admission queue (round-robin across users, first in first out within one)', defaultText: '4 per CPU core, at least 8', parse: integer(1, 10_000) },
  { key: 'reserveCpu', env: 'CORRAL_RESERVE_CPU', description: "CPU cores of the host the oci and docker drivers keep out of the sandboxes' capacity (for the server and the host)", defaultText: '0.5', parse: decimal(0, 100_000) },
  { key: 'reserveMemoryGb', env: 'CORRAL_RESERVE_MEMORY_GB', description: "GB of the host's memory the oci and docker drivers keep out of the sandboxes' capacity", defaultText: '1', parse: decimal(0, 1_000_000) },
  { key: 'overcommitCpu', env: 'CORRAL_OVERCOMMIT_CPU', description: "How far the sum of active sandboxes' cpu_cores may exceed the CPU capacity; a create past it waits, PENDING, in the admission queue", defaultText: '4', parse: decimal(0.1, 1000) },
  { key: 'overcommitMemory', env: 'CORRAL_OVERCOMMIT_MEMORY', description: "How far the sum of active sandboxes' memory_gb may exceed the memory capacity; a create past it waits, PENDING, in the admission queue", defaultText: '1.0', parse: decimal(0.1, 1000) },
  { key: 'admissionQueueMax', env: 'CORRAL_ADMISSION_QUEUE_MAX', description: 'Most creates waiting in the admission queue server-wide; past it a create is answered 429 ADMISSION_QUEUE_FULL with Retry-After and nothing is stored', defaultText: '1000', parse: integer(0, 1_000_000) },
  { key: 'admissionQueueMaxPerUser', env: 'CORRAL_ADMISSION_QUEUE_MAX_PER_USER', description: "Most of one user's creates waiting in the admission queue; past it that user's creates are answered 429 ADMISSION_QUEUE_FULL", defaultText: '250', parse: integer(0, 1_000_000) },
  { key: 'diskReserveGb', env: 'CORRAL_DISK_RESERVE_GB', description: 'GiB kept free on the filesystem holding sandbox disks; a create whose disk does not fit in free space minus this is refused (422)', defaultText: '5', parse: integer(0, 1_000_000) },
  { key: 'diskOvercommit', env: 'CORRAL_DISK_OVERCOMMIT', description: 'Overcommit factor of sparse sandbox disks: a create is refused unless new disk + (unwritten space of existing disks) / factor fits in free space minus the reserve; 0 checks only the new disk', defaultText: '200', parse: integer(0, 1_000_000) },
  { key: 'quotaSandboxes', env: 'CORRAL_QUOTA_SANDBOXES', description: 'Default per-user quota: most active sandboxes (unlimited: no limit; server admins have no default quota)', defaultText: '50', parse: quota(true) },
  { key: 'quotaCpuCores', env: 'CORRAL_QUOTA_CPU_CORES', description: 'Default per-user quota: total CPU cores of active sandboxes', defaultText: '64', parse: quota(false) },
  { key: 'quotaMemoryGb', env: 'CORRAL_QUOTA_MEMORY_GB', description: 'Default per-user quota: total memory of active sandboxes, GB', defaultText: '256', parse: quota(false) },
  { key: 'quotaDiskGb', env: 'CORRAL_QUOTA_DISK_GB', description: 'Default per-user quota: total disk of active sandboxes, GB', defaultText: '2000', parse: quota(false) },
  { key: 'teamQuotaSandboxes', env: 'CORRAL_TEAM_QUOTA_SANDBOXES', description: "Default per-team quota: most active sandboxes in the team (all members')", defaultText: 'unlimited', parse: quota(true) },
  { key: 'teamQuotaCpuCores', env: 'CORRAL_TEAM_QUOTA_CPU_CORES', description: 'Default per-team quota: total CPU cores of active sandboxes in the team', defaultText: 'unlimited', parse: quota(false) },
  { key: 'teamQuotaMemoryGb', env: 'CORRAL_TEAM_QUOTA_MEMORY_GB', description: 'Default per-team quota: total memory of active sandboxes in the team, GB', defaultText: 'unlimited', parse: quota(false) },
  { key: 'teamQuotaDiskGb', env: 'CORRAL_TEAM_QUOTA_DISK_GB', description: 'Default per-team quota: total disk of active sandboxes in the team, GB', defaultText: 'unlimited', parse: quota(false) },
  { key: 'registryInsecure', env: 'CORRAL_REGISTRY_INSECURE', description: 'Registries (host[:port], comma-separated, as written in image names) that pulls may reach over plain HTTP and at loopback, private or link-local addresses; every other registry must be public HTTPS', defaultText: '(none)', parse: hostList },
  { key: 'imageMaxBytes', env: 'CORRAL_IMAGE_MAX_BYTES', description: 'Most bytes one image pull may download, and separately unpack, in the oci driver; larger images fail with IMAGE_PULL_FAILED', defaultText: '8589934592 (8 GiB)', parse: integer(1024 * 1024, 2 ** 50) },
  { key: 'imageBuildConcurrency', env: 'CORRAL_IMAGE_BUILD_CONCURRENCY', description: 'Dockerfile builds that run at once; more wait (status PENDING) in order', defaultText: '2', parse: integer(1, 64) },
  { key: 'imageBuildCpus', env: 'CORRAL_IMAGE_BUILD_CPUS', description: 'CPU cores one Dockerfile build may use', defaultText: '2', parse: decimal(0.1, 256) },
  { key: 'imageBuildMemoryMb', env: 'CORRAL_IMAGE_BUILD_MEMORY_MB', description: 'Memory one Dockerfile build may use, MiB (RUN steps past it are OOM-killed)', defaultText: '2048', parse: integer(64, 1024 * 1024) },
  { key: 'imageBuildDiskGb', env: 'CORRAL_IMAGE_BUILD_DISK_GB', description: "Disk of one user's Dockerfile builds, GiB (the buildah builder of the oci, docker and kubernetes drivers): an ext4 file system of that size (a sparse file) holds what a build writes and its context, and the base images kept between the user's builds; a build past it FAILS, naming this setting; more than half of it in use after a build empties it", defaultText: '20', parse: decimal(0.25, 100_000) },
  { key: 'imageBuildTimeoutSeconds', env: 'CORRAL_IMAGE_BUILD_TIMEOUT_SECONDS', description: 'Longest a Dockerfile build may run before it is killed and FAILED', defaultText: '1800', parse: integer(10, 86_400) },
  { key: 'imageBuildNetwork', env: 'CORRAL_IMAGE_BUILD_NETWORK', description: "Whether RUN steps of Dockerfile builds get a network (off: loopback only; on: the host's network with buildah (oci, docker and kubernetes drivers), the engine's default bridge with the docker driver's fallback engine builder)", defaultText: 'off', parse: onOff },
  { key: 'imageBuildContextMaxBytes', env: 'CORRAL_IMAGE_BUILD_CONTEXT_MAX_BYTES', description: 'Largest build context tarball an upload URL accepts (413 past it)', defaultText: '536870912 (512 MiB)', parse: integer(1024, 2 ** 40) },
  { key: 'imageBuildUploadTtlSeconds', env: 'CORRAL_IMAGE_BUILD_UPLOAD_TTL_SECONDS', description: 'How long the signed upload URL of a build is valid', defaultText: '900', parse: integer(10, 86_400) },
  { key: 'createWaitMs', env: 'CORRAL_CREATE_WAIT_MS', description: 'Longest time POST /api/v1/sandbox holds its answer while the sandbox starts, so it answers RUNNING (0 answers at once, PENDING), and status:batchGet while sandboxes it asks about are starting. Clients may shorten it with the X-Corral-Create-Wait header', defaultText: '3000', parse: integer(0, 25_000) },
  { key: 'webhookAllowPrivate', env: 'CORRAL_WEBHOOK_ALLOW_PRIVATE', description: 'Whether webhook URLs may name, or resolve to, loopback, private, link-local and cloud metadata addresses (checked at registration and again at every delivery)', defaultText: 'off', parse: onOff },
  { key: 'webhookTimeoutMs', env: 'CORRAL_WEBHOOK_TIMEOUT_MS', description: 'Longest one webhook delivery attempt may take (connect to the end of the answer); past it the attempt failed', defaultText: '10000', parse: integer(100, 120_000) },
  { key: 'webhookMaxAttempts', env: 'CORRAL_WEBHOOK_MAX_ATTEMPTS', description: 'Attempts of one webhook delivery before it is given up (status failed)', defaultText: '8', parse: integer(1, 50) },
  { key: 'webhookRetryBaseMs', env: 'CORRAL_WEBHOOK_RETRY_BASE_MS', description: 'Wait before the first retry of a failed webhook delivery; each later one waits twice as long (±20 % jitter), at most an hour', defaultText: '10000', parse: integer(10, 3_600_000) },
];

const DEFAULTS: CorralConfig = {
  host: '127.0.0.1',
  port: 8080,
  dataDir: defaultDataDir(),
  databaseUrl: null,
  publicUrl: null,
  runtime: 'oci',
  dockerHost: null,
  ociRuntime: 'runc',
  criu: 'criu',
  ociUserns: 'auto',
  ociPoolSize: 8,
  ociWarmPoolMax: 0,
  sandboxCpuWeight: 10,
  k8sNamespace: 'corral-sandboxes',
  k8sRuntimeClass: null,
  k8sNetworkPolicy: 'required',
  k8sServerCidrs: [],
  k8sServerPods: null,
  k8sBlockedCidrs: [],
  k8sExec: 'auto',
  k8sImageRegistry: null,
  k8sImageRegistryUsername: null,
  k8sImageRegistryPassword: null,
  egressDnsUpstream: null,
  egressTtlFloorSeconds: 60,
  instanceId: 'corral',
  replicaId: `${hostname()}-${process.pid}`,
  replicaLeaseMs: 10_000,
  bootstrapApiKey: null,
  rateLimits: true,
  reconcileIntervalMs: 2000,
  logLevel: 'info',
  gatewaySecret: null,
  gatewayTokenTtlSeconds: 3600,
  maxExecTimeoutSeconds: 3600,
  logsMaxBytes: 1024 * 1024,
  pidsLimit: 1024,
  terminatedRetentionHours: 168,
  checkpointRetentionHours: 0,
  maxCheckpointsPerUser: 1000,
  metrics: 'loopback',
  metricsKey: null,
  dashboard: true,
  dashboardDir: null,
  execOutputMaxBytes: 16 * 1024 * 1024,
  execMaxRequestBytes: 16 * 1024 * 1024,
  maxConcurrentExecs: 1024,
  maxExecsPerUser: 128,
  maxExecsPerSandbox: 32,
  execsPerCpu: 8,
  maxQueuedPerUser: 4096,
  maxSessionsPerUser: 128,
  maxSessionsPerSandbox: 32,
  gatewayRateLimit: 200,
  gatewayRateBurst: 2000,
  execOutputBudgetBytes: 512 * 1024 * 1024,
  execOutputBudgetPerUserBytes: 32 * 1024 * 1024,
  transferIdleTimeoutSeconds: 60,
  proxyDomain: 'localhost',
  networkHost: null,
  tcpPortRange: '30000-30999',
  sshPort: 2222,
  egressNflogGroup: DEFAULT_NFLOG_GROUP,
  proxyTlsCert: null,
  proxyTlsKey: null,
  proxyTlsPort: 8443,
  tunnelTtlSeconds: 86_400,
  maxTunnelsPerUser: 20,
  maxConcurrentProvisioning: Math.max(8, 4 * availableParallelism()),
  diskReserveGb: 5,
  diskOvercommit: 200,
  quotaSandboxes: 50,
  quotaCpuCores: 64,
  quotaMemoryGb: 256,
  quotaDiskGb: 2000,
  teamQuotaSandboxes: null,
  teamQuotaCpuCores: null,
  teamQuotaMemoryGb: null,
  teamQuotaDiskGb: null,
  registryInsecure: [],
  imageMaxBytes: 8 * 1024 ** 3,
  imageBuildConcurrency: 2,
  imageBuildCpus: 2,
  imageBuildMemoryMb: 2048,
  imageBuildDiskGb: 20,
  imageBuildTimeoutSeconds: 1800,
  imageBuildNetwork: false,
  imageBuildContextMaxBytes: 512 * 1024 ** 2,
  imageBuildUploadTtlSeconds: 900,
  createWaitMs: 3000,
  webhookAllowPrivate: false,
  webhookTimeoutMs: 10_000,
  webhookMaxAttempts: 8,
  webhookRetryBaseMs: 10_000,
  reserveCpu: 0.5,
  reserveMemoryGb: 1,
  overcommitCpu: 4,
  overcommitMemory: 1,
  admissionQueueMax: 1000,
  admissionQueueMaxPerUser: 250,
};

/**
 * Builds the configuration: defaults, then the optional JSON config file (keys as in
 * `CorralConfig`, or as environment variable names), then the environment, then explicit overrides.
 * Throws an error naming the setting when a value is invalid.
 */
export function loadConfig(
  options: { env?: NodeJS.ProcessEnv; configFile?: string | null; overrides?: Partial<CorralConfig> } = {},
): CorralConfig {
  const env = options.env ?? process.env;
  const config: Record<string, unknown> = { ...DEFAULTS };
  const file = options.configFile ?? env.CORRAL_CONFIG ?? null;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new Error(`cannot read config file ${file}: ${(error as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error(`config file ${file} must hold a JSON object`);
    }
    for (const [name, value] of Object.entries(parsed)) {
      const setting = SETTINGS.find((s) => s.key === name || s.env === name);
      if (!setting) throw new Error(`config file ${file}: unknown setting "${name}"`);
      config[setting.key] = setting.parse(String(value), `${file}: ${name}`);
    }
  }
  for (const setting of SETTINGS) {
    const raw = env[setting.env];
    if (raw !== undefined && raw !== '') config[setting.key] = setting.parse(raw, setting.env);
  }
  Object.assign(config, options.overrides ?? {});
  const result = config as unknown as CorralConfig;
  if ((result.k8sImageRegistryUsername === null) !== (result.k8sImageRegistryPassword === null)) {
    throw new Error('CORRAL_K8S_IMAGE_REGISTRY_USERNAME and CORRAL_K8S_IMAGE_REGISTRY_PASSWORD are set together or not at all');
  }
  result.dataDir = resolve(result.dataDir);
  return result;
}

/** The settings table as text, for `--help`. */
export function describeSettings(): string {
  const width = Math.max(...SETTINGS.map((s) => s.env.length));
  return SETTINGS.map((s) => `  ${s.env.padEnd(width)}  ${s.description} (default: ${s.defaultText})`).join('\n');
}

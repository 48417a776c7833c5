import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Which runtime driver starts sandboxes. `none` stores sandboxes but never starts them (they stay PENDING). */
export type RuntimeDriverName = 'docker' | 'oci' | 'none';

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
  /** User namespace of oci sandboxes: `auto` (on where the host allows it), `off`, or an explicit host id range (required). */
  ociUserns: 'auto' | 'off' | { hostUid: number; hostGid: number; size: number };
  /** Namespaces and disks the oci driver keeps ready ahead of creates. */
  ociPoolSize: number;
  instanceId: string;
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
  /** PEM certificate and key files; when both are set, exposures and tunnels are also served over HTTPS on proxyTlsPort. */
  proxyTlsCert: string | null;
  proxyTlsKey: string | null;
  proxyTlsPort: number;
  /** How long a tunnel lives, seconds. */
  tunnelTtlSeconds: number;
  /** Most tunnels (not yet expired) one user may hold. */
  maxTunnelsPerUser: number;
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
const onOff: Parser = (raw, name) => {
  if (['1', 'true', 'on', 'yes'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'off', 'no'].includes(raw.toLowerCase())) return false;
  throw new Error(`${name} must be on or off, got "${raw}"`);
};

/** Every setting, its environment variable and its default. `corral serve --help` prints this table. */
export const SETTINGS: readonly Setting[] = [
  { key: 'host', env: 'CORRAL_HOST', description: 'Address the API listens on', defaultText: '127.0.0.1', parse: text },
  { key: 'port', env: 'CORRAL_PORT', description: 'Port the API listens on (0 picks a free port)', defaultText: '8080', parse: integer(0, 65535) },
  { key: 'dataDir', env: 'CORRAL_DATA_DIR', description: 'Directory for the SQLite store and server secrets', defaultText: '~/.corral', parse: text },
  { key: 'databaseUrl', env: 'DATABASE_URL', description: 'PostgreSQL URL; when set, replaces the embedded SQLite store', defaultText: '(unset: SQLite)', parse: optionalText },
  { key: 'publicUrl', env: 'CORRAL_PUBLIC_URL', description: 'Absolute URL clients use to reach this server (gateway_url is built from it)', defaultText: 'http://<host>:<port>', parse: optionalText },
  { key: 'runtime', env: 'CORRAL_RUNTIME', description: 'Runtime driver: docker, oci (daemonless runc/crun), or none (sandboxes are stored but never started)', defaultText: 'oci', parse: oneOf('docker', 'oci', 'none') },
  { key: 'ociRuntime', env: 'CORRAL_OCI_RUNTIME', description: 'OCI runtime binary the oci driver calls: runc, or crun (faster; needs scripts/ensure-oci.sh --crun)', defaultText: 'runc', parse: oneOf('runc', 'crun') },
  { key: 'ociUserns', env: 'CORRAL_OCI_USERNS', description: 'Root in oci sandboxes is an unprivileged host id: auto (on where the host allows it; the default range is 1879048192:1879048192:65536), off, or <hostUid>:<hostGid>:<size> (required)', defaultText: 'auto', parse: usernsMode },
  { key: 'ociPoolSize', env: 'CORRAL_OCI_POOL_SIZE', description: 'Network namespaces (of each kind) and formatted disks (of each recent size) the oci driver keeps ready ahead of creates; set it near your largest burst of creates', defaultText: '8', parse: integer(0, 4096) },
  { key: 'dockerHost', env: 'DOCKER_HOST', description: 'Docker Engine endpoint for the docker driver', defaultText: 'unix:///var/run/docker.sock', parse: optionalText },
  { key: 'instanceId', env: 'CORRAL_INSTANCE_ID', description: 'Name stamped on every container this server creates; servers sharing a host need different ones', defaultText: 'corral', parse: text },
  { key: 'bootstrapApiKey', env: 'CORRAL_BOOTSTRAP_API_KEY', description: 'When set, an admin API key with exactly this value exists after startup', defaultText: '(unset: the first start prints a new admin key)', parse: optionalText },
  { key: 'rateLimits', env: 'CORRAL_RATE_LIMITS', description: 'Enforce the Prime API rate limits per key (and per sandbox)', defaultText: 'on', parse: onOff },
  { key: 'reconcileIntervalMs', env: 'CORRAL_RECONCILE_INTERVAL_MS', description: 'How often the reconciler checks timeouts and runtime state', defaultText: '2000', parse: integer(50, 600_000) },
  { key: 'logLevel', env: 'CORRAL_LOG_LEVEL', description: 'Log level: fatal, error, warn, info, debug, trace, silent', defaultText: 'info', parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent') },
  { key: 'gatewaySecret', env: 'CORRAL_GATEWAY_SECRET', description: 'Key that signs gateway tokens; replicas must share it', defaultText: '(generated once into the data dir)', parse: optionalText },
  { key: 'gatewayTokenTtlSeconds', env: 'CORRAL_GATEWAY_TOKEN_TTL', description: 'Lifetime of a gateway token, seconds', defaultText: '3600', parse: integer(60, 86_400) },
  { key: 'maxExecTimeoutSeconds', env: 'CORRAL_MAX_EXEC_TIMEOUT', description: 'Largest exec timeout a client may ask for, seconds', defaultText: '3600', parse: integer(1, 86_400 * 7) },
  { key: 'logsMaxBytes', env: 'CORRAL_LOGS_MAX_BYTES', description: 'Most bytes of start-command output returned by the logs endpoint', defaultText: '1048576', parse: integer(1024, 64 * 1024 * 1024) },
  { key: 'pidsLimit', env: 'CORRAL_PIDS_LIMIT', description: 'Most processes one sandbox may run', defaultText: '1024', parse: integer(16, 1_000_000) },
  { key: 'terminatedRetentionHours', env: 'CORRAL_RETENTION_HOURS', description: 'How long ended sandboxes stay readable before their rows are purged', defaultText: '168', parse: integer(1, 100_000) },
  { key: 'execOutputMaxBytes', env: 'CORRAL_EXEC_OUTPUT_MAX_BYTES', description: 'Most bytes of stdout (and of stderr) one gateway exec returns; the rest is replaced by a truncation marker', defaultText: '16777216', parse: integer(1024, 1024 * 1024 * 1024) },
  { key: 'execMaxRequestBytes', env: 'CORRAL_EXEC_MAX_REQUEST_BYTES', description: 'Largest gateway exec request body, bytes (the command travels inside it)', defaultText: '16777216', parse: integer(64 * 1024, 1024 * 1024 * 1024) },
  { key: 'maxConcurrentExecs', env: 'CORRAL_MAX_CONCURRENT_EXECS', description: 'Most gateway operations running in sandboxes at once across the server; more wait in a queue', defaultText: '1024', parse: integer(1, 100_000) },
  { key: 'maxExecsPerUser', env: 'CORRAL_MAX_EXECS_PER_USER', description: 'Most gateway operations of one user (the sandbox owner) running at once; more wait, and free slots go round-robin between users', defaultText: '128', parse: integer(1, 100_000) },
  { key: 'maxExecsPerSandbox', env: 'CORRAL_MAX_EXECS_PER_SANDBOX', description: 'Most gateway operations of one sandbox running at once', defaultText: '32', parse: integer(1, 100_000) },
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
  { key: 'proxyTlsCert', env: 'CORRAL_PROXY_TLS_CERT', description: 'PEM certificate file; with CORRAL_PROXY_TLS_KEY, exposures and tunnels are also served over HTTPS', defaultText: '(unset: no TLS)', parse: optionalText },
  { key: 'proxyTlsKey', env: 'CORRAL_PROXY_TLS_KEY', description: 'PEM private key file for CORRAL_PROXY_TLS_CERT', defaultText: '(unset)', parse: optionalText },
  { key: 'proxyTlsPort', env: 'CORRAL_PROXY_TLS_PORT', description: 'Port of the HTTPS listener for exposures and tunnels (0 picks a free port)', defaultText: '8443', parse: integer(0, 65535) },
  { key: 'tunnelTtlSeconds', env: 'CORRAL_TUNNEL_TTL', description: 'How long a tunnel lives, seconds', defaultText: '86400', parse: integer(60, 86_400 * 30) },
  { key: 'maxTunnelsPerUser', env: 'CORRAL_MAX_TUNNELS_PER_USER', description: 'Most unexpired tunnels one user may hold', defaultText: '20', parse: integer(1, 10_000) },
];

const DEFAULTS: CorralConfig = {
  host: '127.0.0.1',
  port: 8080,
  dataDir: join(homedir(), '.corral'),
  databaseUrl: null,
  publicUrl: null,
  runtime: 'oci',
  dockerHost: null,
  ociRuntime: 'runc',
  ociUserns: 'auto',
  ociPoolSize: 8,
  instanceId: 'corral',
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
  execOutputMaxBytes: 16 * 1024 * 1024,
  execMaxRequestBytes: 16 * 1024 * 1024,
  maxConcurrentExecs: 1024,
  maxExecsPerUser: 128,
  maxExecsPerSandbox: 32,
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
  proxyTlsCert: null,
  proxyTlsKey: null,
  proxyTlsPort: 8443,
  tunnelTtlSeconds: 86_400,
  maxTunnelsPerUser: 20,
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
  result.dataDir = resolve(result.dataDir);
  return result;
}

/** The settings table as text, for `--help`. */
export function describeSettings(): string {
  const width = Math.max(...SETTINGS.map((s) => s.env.length));
  return SETTINGS.map((s) => `  ${s.env.padEnd(width)}  ${s.description} (default: ${s.defaultText})`).join('\n');
}

import { readFileSync } from 'node:fs';
import { IDLE_COMMAND, KEPT_CAPABILITIES } from '../container-policy.js';
import type { SandboxSpec } from '../runtime.js';
import type { UsernsMapping } from './userns.js';

/** Path inside the sandbox where `corral-agent` (its PID 1) is bind-mounted. */
export const INIT_PATH = '/dev/init';

/** The descriptor the shim passes the precompiled seccomp program on (after the agent socket, fd 3). */
export const SECCOMP_FD = 4;

/** Capabilities every sandbox keeps (the Docker driver's set, see docs/runtime-docker.md). */
export const OCI_CAPABILITIES = KEPT_CAPABILITIES.map((c) => `CAP_${c}`);

/** Paths masked like Docker's defaults (an empty file or tmpfs over them). */
export const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** Paths mounted read-only like Docker's defaults. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** An OCI process capability set. */
export interface CapabilitySet {
  bounding: string[];
  effective: string[];
  permitted: string[];
  inheritable: string[];
  ambient: string[];
}

/** The capabilities of a process running as `uid`: root keeps the kept set, others only the bounding set. */
export function capabilitiesFor(uid: number): CapabilitySet {
  const kept = uid === 0 ? OCI_CAPABILITIES : [];
  return { bounding: OCI_CAPABILITIES, effective: kept, permitted: kept, inheritable: [], ambient: [] };
}

let seccompProfile: unknown;

/**
 * The seccomp profile every sandbox runs under (`packages/server/agent/seccomp-default.json`, found from src/ and dist/ alike): the
 * containers-common default (Docker's, as maintained for podman) resolved for amd64 and for the
 * capabilities sandboxes keep, with namespace/mount/keyring syscalls restricted as in Docker's.
 */
export function defaultSeccompProfile(): unknown {
  seccompProfile ??= JSON.parse(readFileSync(new URL('../../../agent/seccomp-default.json', import.meta.url), 'utf8')) as unknown;
  return seccompProfile;
}

/** Where the bundle's pieces are on the host. */
export interface BundlePlacement {
  /** Absolute path of the merged overlay (the container's root; mounted nosuid,nodev). */
  rootfs: string;
  /** Network namespace file to join; undefined: a new one (a memory restore, where CRIU makes it). */
  netnsPath: string | undefined;
  /** cgroup path (absolute, under each v1 hierarchy). */
  cgroupsPath: string;
  /** `corral-agent` on the host: PID 1 of the sandbox, serving exec sessions on the socket passed as fd 3. */
  agentBinary: string;
  /**
   * True: the agent loads the default profile precompiled to BPF from fd 4 (the shim passes it),
   * and config.json carries no seccomp section. False: the runtime compiles the profile itself.
   */
  seccompPrecompiled: boolean;
  /** Image environment (`KEY=value`), overridden by the spec's. */
  imageEnv: string[];
  /** Working directory from the image config (default `/`). */
  workingDir: string;
  hostname: string;
  /**
   * Join the user namespace kept at `path` (made with `mapping`; it owns the network namespace at
   * `netnsPath`), or without a path a new one with `mapping` (a memory restore); the rootfs must be
   * id-mapped to match.
   */
  userns?: { mapping: UsernsMapping; path: string | undefined };
  /**
   * The CRIU configuration file runc hands CRIU on a checkpoint or restore of this container (the
   * `org.criu.config` annotation): the driver writes it before each one.
   */
  criuConfigPath?: string;
}

/** Memory.swap equals memory: no swap. CPU: quota = cores × period. */
export function buildOciConfig(spec: SandboxSpec, placement: BundlePlacement): Record<string, unknown> {
  const env = mergeEnv(placement.imageEnv, spec.env);
  const command = ['/bin/sh', '-c', spec.startCommand ?? IDLE_COMMAND];
  const args = [INIT_PATH, 'init', ...(placement.seccompPrecompiled ? [`--seccomp-fd=${SECCOMP_FD}`] : []), '--', ...command];
  const userns = placement.userns;
  const period = 100_000;
  const mounts: Record<string, unknown>[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
  // /etc/hosts, /etc/resolv.conf and /etc/hostname are files in the rootfs's upper layer (the sandbox's own disk), not mounts.
  mounts.push({ destination: INIT_PATH, type: 'bind', source: placement.agentBinary, options: ['bind', 'ro', 'nosuid', 'nodev'] });
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env,
      cwd: placement.workingDir || '/',
      capabilities: capabilitiesFor(0),
      noNewPrivileges: true,
    },
    root: { path: placement.rootfs, readonly: false },
    hostname: placement.hostname,
    mounts,
    linux: {
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: { limit: spec.memoryBytes, swap: spec.memoryBytes },
        cpu: { quota: Math.max(1000, Math.round(spec.cpuCores * period)), period },
        pids: { limit: spec.pidsLimit },
      },
      cgroupsPath: placement.cgroupsPath,
      namespaces: [
        ...(userns ? [{ type: 'user', ...(userns.path !== undefined ? { path: userns.path } : {}) }] : []),
        { type: 'pid' },
        { type: 'network', ...(placement.netnsPath !== undefined ? { path: placement.netnsPath } : {}) },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
        { type: 'cgroup' },
      ],
      ...(userns && {
        uidMappings: [{ containerID: 0, hostID: userns.mapping.hostUid, size: userns.mapping.size }],
        gidMappings: [{ containerID: 0, hostID: userns.mapping.hostGid, size: userns.mapping.size }],
      }),
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      ...(placement.seccompPrecompiled ? {} : { seccomp: defaultSeccompProfile() }),
    },
    ...(placement.criuConfigPath !== undefined ? { annotations: { [CRIU_CONFIG_ANNOTATION]: placement.criuConfigPath } } : {}),
  };
}

/** The annotation through which runc passes a CRIU configuration file to CRIU. */
export const CRIU_CONFIG_ANNOTATION = 'org.criu.config';

/** Image env overridden by the spec env, as `KEY=value` (order: image keys first). */
export function mergeEnv(imageEnv: string[], specEnv: Record<string, string>): string[] {
  const map = new Map<string, string>();
  for (const entry of imageEnv) {
    const eq = entry.indexOf('=');
    if (eq > 0) map.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  for (const [k, v] of Object.entries(specEnv)) map.set(k, v);
  if (!map.has('PATH')) map.set('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  return [...map].map(([k, v]) => `${k}=${v}`);
}

import type Docker from 'dockerode';
import { IDLE_COMMAND, KEPT_CAPABILITIES } from '../container-policy.js';
import type { SandboxSpec } from '../runtime.js';
import type { EtcFilePaths } from './etc-files.js';

/** Label holding the Corral sandbox id on every container the driver creates. */
export const LABEL_SANDBOX_ID = 'corral.sandbox-id';
/** Label holding the driver instance, so several servers on one engine keep apart. */
export const LABEL_INSTANCE = 'corral.instance';
/** Label on shared objects (the egress network) the driver manages. */
export const LABEL_MANAGED = 'corral.managed';

/** Container name for a sandbox. */
export function containerName(sandboxId: string): string {
  return `corral-${sandboxId}`;
}

/** Everything `buildCreateOptions` needs besides the spec. */
export interface ContainerPlacement {
  instance: string;
  /** Network mode: `none`, or the name of the egress network. */
  networkMode: string;
  /** Host directory to bind at the workspace path (a loop-mounted disk), if any. */
  workspaceSource: string | null;
  /**
   * `StorageOpt.size` in bytes (the limit of the container's whole writable layer), or null to pass
   * none. Only for engines whose storage driver supports it (btrfs, zfs, overlay2 on XFS+pquota).
   */
  storageOptBytes: number | null;
  /** GPU device requests to pass, when the spec asks for GPUs. */
  gpuDriver: string | null;
  /** Turn IPv6 off in the container's network namespace (false only where the kernel has no IPv6). */
  disableIpv6: boolean;
  /** Files mounted read-only over /etc/hosts, /etc/resolv.conf and /etc/hostname (Docker then mounts none of its own). */
  etcFiles: EtcFilePaths | null;
  /** `HostConfig.CgroupParent` (the cgroup the container's goes under), or null for Docker's default. */
  cgroupParent?: string | null;
}

/** Sandbox hostname: `sandbox-<id>`, at most 63 characters. */
export function sandboxHostname(sandboxId: string): string {
  return `sandbox-${sandboxId}`.slice(0, 63);
}

/**
 * Sysctls that turn IPv6 off on every interface of a container (`lo` included, as Docker does for
 * networks without IPv6): a sandbox cannot reach the host or its neighbours over link-local IPv6.
 * `/proc/sys` is read-only in the container and NET_ADMIN is dropped, so it cannot turn IPv6 back on.
 */
export const IPV6_OFF_SYSCTLS: Record<string, string> = { 'net.ipv6.conf.all.disable_ipv6': '1', 'net.ipv6.conf.default.disable_ipv6': '1' };

/** Translates a sandbox spec into Docker's container-create body. */
export function buildCreateOptions(spec: SandboxSpec, placement: ContainerPlacement): Docker.ContainerCreateOptions {
  const env = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
  // CgroupnsMode (Engine API 1.41) is missing from dockerode's types.
  const hostConfig: Docker.HostConfig & { CgroupnsMode: 'private' | 'host' } = {
    Init: true,
    NanoCpus: Math.max(1, Math.round(spec.cpuCores * 1e9)),
    Memory: spec.memoryBytes,
    MemorySwap: spec.memoryBytes,
    PidsLimit: spec.pidsLimit,
    CapDrop: ['ALL'],
    CapAdd: KEPT_CAPABILITIES,
    SecurityOpt: ['no-new-privileges'],
    CgroupnsMode: 'private',
    NetworkMode: placement.networkMode,
    RestartPolicy: { Name: 'no' },
    LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '1' } },
    Mounts: [
      ...(placement.workspaceSource ? [{ Type: 'bind' as const, Source: placement.workspaceSource, Target: spec.workspacePath, ReadOnly: false }] : []),
      ...(placement.etcFiles
        ? [
            { Type: 'bind' as const, Source: placement.etcFiles.hosts, Target: '/etc/hosts', ReadOnly: true },
            { Type: 'bind' as const, Source: placement.etcFiles.resolvConf, Target: '/etc/resolv.conf', ReadOnly: true },
            { Type: 'bind' as const, Source: placement.etcFiles.hostname, Target: '/etc/hostname', ReadOnly: true },
          ]
        : []),
    ],
  };
  if (placement.cgroupParent) hostConfig.CgroupParent = placement.cgroupParent;
  if (placement.disableIpv6) hostConfig.Sysctls = { ...IPV6_OFF_SYSCTLS };
  if (placement.storageOptBytes !== null) hostConfig.StorageOpt = { size: String(placement.storageOptBytes) };
  if (spec.gpuCount > 0 && placement.gpuDriver) {
    hostConfig.DeviceRequests = [{ Driver: placement.gpuDriver, Count: spec.gpuCount, Capabilities: [['gpu']] }];
  }
  return {
    name: containerName(spec.sandboxId),
    Image: spec.image,
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: [spec.startCommand ?? IDLE_COMMAND],
    Env: env,
    Labels: { [LABEL_SANDBOX_ID]: spec.sandboxId, [LABEL_INSTANCE]: placement.instance },
    Hostname: sandboxHostname(spec.sandboxId),
    Tty: false,
    OpenStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    HostConfig: hostConfig,
  };
}

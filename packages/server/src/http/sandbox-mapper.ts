import type { SandboxRecord } from '../records/sandbox-records.js';
import { DISK_MOUNT_PATH } from '../records/sandbox-records.js';
import type { SandboxResponse } from './schemas/sandbox-schemas.js';

/** What every secret value reads as. */
export const SECRET_MASK = '***';

/** A stored sandbox as the API returns it: camelCase, secrets masked. */
export function toSandboxResponse(s: SandboxRecord): SandboxResponse {
  return {
    id: s.id,
    name: s.name,
    dockerImage: s.dockerImage,
    startCommand: s.startCommand,
    cpuCores: s.cpuCores,
    memoryGB: s.memoryGb,
    diskSizeGB: s.diskSizeGb,
    diskMountPath: DISK_MOUNT_PATH,
    gpuCount: s.gpuCount,
    gpuType: s.gpuType,
    vm: s.vm,
    // Legacy view of the policy: false exactly when the allow list is empty (no egress at all).
    networkAccess: !(s.networkAllowlist !== null && s.networkAllowlist.length === 0),
    networkAllowlist: s.networkAllowlist,
    networkDenylist: s.networkDenylist,
    status: s.status,
    timeoutMinutes: s.timeoutMinutes,
    idleTimeoutMinutes: s.idleTimeoutMinutes,
    terminationReason: s.terminationReason,
    environmentVars: s.environmentVars,
    secrets: s.secrets === null ? null : Object.fromEntries(Object.keys(s.secrets).map((k) => [k, SECRET_MASK])),
    advancedConfigs: s.advancedConfigs,
    labels: s.labels,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
    startedAt: s.startedAt,
    terminatedAt: s.terminatedAt,
    exitCode: s.exitCode,
    errorType: s.errorType,
    errorMessage: s.errorMessage,
    userId: s.userId,
    teamId: s.teamId,
    kubernetesJobId: s.kubernetesJobId,
    region: s.region,
    registryCredentialsId: s.registryCredentialsId,
    pendingImageBuildId: null,
    guaranteed: s.guaranteed,
    checkpointId: s.checkpointId,
  };
}

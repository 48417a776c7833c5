import type { SandboxSpec } from '../runtime/runtime.js';
import type { SandboxRecord } from '../records/sandbox-records.js';

/**
 * A stored sandbox for tests and benchmarks that write rows directly: PENDING, default resources,
 * every optional field null. `overrides` must at least give `id` and `userId` to be meaningful.
 */
export function sandboxFixture(overrides: Partial<SandboxRecord> & Pick<SandboxRecord, 'id' | 'userId'>): SandboxRecord {
  return {
    name: 'box',
    dockerImage: 'python:3.11-slim',
    startCommand: null,
    cpuCores: 1,
    memoryGb: 2,
    diskSizeGb: 10,
    gpuCount: 0,
    gpuType: null,
    vm: false,
    networkAccess: true,
    networkAllowlist: null,
    networkDenylist: null,
    egressGeneration: 1,
    egressAppliedGeneration: 0,
    status: 'PENDING',
    timeoutMinutes: 60,
    idleTimeoutMinutes: null,
    terminationReason: null,
    environmentVars: null,
    secrets: null,
    advancedConfigs: null,
    labels: [],
    teamId: null,
    region: null,
    registryCredentialsId: null,
    guaranteed: false,
    idempotencyKey: null,
    createdAt: '2020-01-01T00:00:00.000Z',
    updatedAt: '2020-01-01T00:00:00.000Z',
    startedAt: null,
    terminatedAt: null,
    lastActivityAt: null,
    exitCode: null,
    errorType: null,
    errorMessage: null,
    runtimeDriver: null,
    runtimeId: null,
    runtimeOwner: null,
    provisioner: null,
    admissionDeadline: null,
    kubernetesJobId: null,
    pausedAt: null,
    pausedMs: 0,
    checkpointId: null,
    ...overrides,
  };
}

/**
 * A runtime spec for driver tests: no start command, no network, no GPU, the standard workspace.
 * `overrides` sets the image, id and limits a test cares about.
 */
export function specFixture(overrides: Partial<SandboxSpec> & Pick<SandboxSpec, 'sandboxId' | 'image'>): SandboxSpec {
  return {
    startCommand: null,
    env: {},
    cpuCores: 1,
    memoryBytes: 256 * 1024 * 1024,
    diskBytes: 1024 * 1024 * 1024,
    pidsLimit: 256,
    networkAccess: false,
    gpuCount: 0,
    gpuType: null,
    workspacePath: '/sandbox-workspace',
    ...overrides,
  };
}

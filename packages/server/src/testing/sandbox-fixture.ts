import type { SandboxRecord } from '../services/sandbox-model.js';

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
    ...overrides,
  };
}

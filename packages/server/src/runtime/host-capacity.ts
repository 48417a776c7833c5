import { availableParallelism, totalmem } from 'node:os';
import type { CorralConfig } from '../config.js';
import type { SandboxCapacity } from './runtime.js';

const GiB = 1024 ** 3;

/** What a driver keeps out of the host's resources before offering the rest to sandboxes. */
export interface CapacityReserve {
  cpuCores: number;
  memoryBytes: number;
}

/** The reserve the configuration sets (CORRAL_RESERVE_CPU, CORRAL_RESERVE_MEMORY_GB). */
export function capacityReserveOf(config: Pick<CorralConfig, 'reserveCpu' | 'reserveMemoryGb'>): CapacityReserve {
  return { cpuCores: config.reserveCpu, memoryBytes: Math.round(config.reserveMemoryGb * GiB) };
}

/**
 * The host's CPU cores (the ones this process may use) and memory, minus `reserve`. Never below a
 * tenth of a core and 256 MiB, so a reserve larger than a small host still leaves a usable capacity.
 */
export function hostCapacity(reserve: CapacityReserve, host: { cpuCores: number; memoryBytes: number } = { cpuCores: availableParallelism(), memoryBytes: totalmem() }): SandboxCapacity {
  return {
    cpuCores: Math.max(0.1, host.cpuCores - reserve.cpuCores),
    memoryBytes: Math.max(256 * 1024 ** 2, host.memoryBytes - reserve.memoryBytes),
  };
}

import { statfs } from 'node:fs/promises';
import type { CorralConfig } from '../config.js';
import type { DiskCapacity } from './runtime.js';

const GiB = 1024 ** 3;

/** How much of the host's disk sandbox disks may claim. */
export interface DiskPolicy {
  /** Bytes always left free on the filesystem holding sandbox disks. */
  reserveBytes: number;
  /**
   * Overcommit factor of sparse disks: the space existing disks could still grow by (their size
   * minus what they use), divided by this, must fit in free space beside the new disk. 0: unchecked.
   */
  overcommit: number;
}

/** With no policy given, a disk must only fit in the free space. */
export const NO_RESERVE: DiskPolicy = { reserveBytes: 0, overcommit: 0 };

/** The disk admission policy the configuration sets (CORRAL_DISK_RESERVE_GB, CORRAL_DISK_OVERCOMMIT). */
export function diskPolicyOf(config: Pick<CorralConfig, 'diskReserveGb' | 'diskOvercommit'>): DiskPolicy {
  return { reserveBytes: config.diskReserveGb * 1024 ** 3, overcommit: config.diskOvercommit };
}

/**
 * Why a new disk of `diskBytes` must be refused, or null when it may be made. The rule, over the
 * filesystem holding sandbox disks:
 * 1. the disk alone fits: `diskBytes ≤ free − reserve`;
 * 2. with an overcommit factor f > 0, so do the disks already there if they keep growing:
 *    `diskBytes + (allocated − used) / f ≤ free − reserve`.
 * Disks are sparse, so (1) only bounds what one sandbox can ever write, and (2) is what stops many
 * sandboxes together from growing into the host's last bytes (with f = 1 every byte is reserved).
 */
export function diskShortfall(capacity: DiskCapacity, diskBytes: number, policy: DiskPolicy): string | null {
  const available = capacity.freeBytes - policy.reserveBytes;
  if (diskBytes > available) {
    return `a ${gib(diskBytes)} GiB disk does not fit: the host has ${gib(Math.max(0, available))} GiB free for sandbox disks (${gib(capacity.freeBytes)} GiB free, ${gib(policy.reserveBytes)} GiB kept in reserve)`;
  }
  if (policy.overcommit > 0) {
    const growth = Math.max(0, capacity.allocatedBytes - capacity.usedBytes) / policy.overcommit;
    if (diskBytes + growth > available) {
      return `a ${gib(diskBytes)} GiB disk does not fit: the host has ${gib(Math.max(0, available))} GiB free for sandbox disks and ${gib(growth)} GiB of it is held for the growth of existing disks`;
    }
  }
  return null;
}

/** Free and total bytes of the filesystem holding `path` (for unprivileged writers: `bavail`). */
export async function filesystemSpace(path: string): Promise<{ freeBytes: number; totalBytes: number }> {
  const fs = await statfs(path);
  return { freeBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize };
}

function gib(bytes: number): string {
  return (bytes / GiB).toFixed(bytes < 10 * GiB ? 2 : 0);
}

import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

const COLUMNS = ['resource', 'used', 'limit'];

/** Bytes as B, KiB, MiB or GiB with one decimal. */
function bytes(n: number | null): string | null {
  if (n === null) return null;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** `corral sandbox stats ID`: CPU, memory, pids, disk and network of a running sandbox (table or `-o json`). */
export async function printStats(id: string, _options: unknown, globals: GlobalOptions): Promise<void> {
  const stats = await clientFor(globals).stats(id);
  const net = stats.network;
  const rows = [
    { resource: 'cpu', used: `${stats.cpu.usageSeconds.toFixed(2)} s`, limit: `${stats.cpu.limitCores} cores` },
    { resource: 'memory', used: bytes(stats.memory.usedBytes), limit: bytes(stats.memory.limitBytes) },
    { resource: 'pids', used: String(stats.pids), limit: null },
    { resource: 'disk', used: bytes(stats.disk.usedBytes), limit: bytes(stats.disk.limitBytes) },
    { resource: 'net rx', used: net ? `${bytes(net.rxBytes) ?? ''} (${net.rxPackets} packets)` : null, limit: null },
    { resource: 'net tx', used: net ? `${bytes(net.txBytes) ?? ''} (${net.txPackets} packets)` : null, limit: null },
  ];
  printResult(globals.output, stats, rows, COLUMNS);
}

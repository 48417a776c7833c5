import type { SandboxRuntime } from '../runtime/runtime.js';

/** Network counters of a sandbox's own interfaces (loopback left out). */
export interface SandboxNetworkUsage {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

/** What `readInsideUsage` learns from inside a sandbox; null fields could not be read. */
export interface InsideUsage {
  /** Bytes used on the sandbox's root filesystem (its writable disk), from `df`. */
  diskUsedBytes: number | null;
  network: SandboxNetworkUsage | null;
}

/** Output read from the probe at most. */
const MAX_PROBE_BYTES = 64 * 1024;
/** The probe is killed after this long. */
const PROBE_TIMEOUT_MS = 3_000;
const PROBE = 'cat /proc/net/dev 2>/dev/null; echo @@corral-df@@; df -P -k / 2>/dev/null';

/** Sums `/proc/net/dev` counters over every interface but `lo`; null when the text has none. */
export function parseNetDev(text: string): SandboxNetworkUsage | null {
  let found = false;
  const usage: SandboxNetworkUsage = { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0 };
  for (const line of text.split('\n')) {
    const match = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!match || match[1] === 'lo') continue;
    const fields = (match[2] ?? '').trim().split(/\s+/).map(Number);
    if (fields.length < 16 || fields.some((n) => !Number.isFinite(n) || n < 0)) continue;
    found = true;
    usage.rxBytes += fields[0] as number;
    usage.rxPackets += fields[1] as number;
    usage.txBytes += fields[8] as number;
    usage.txPackets += fields[9] as number;
  }
  return found ? usage : null;
}

/** The used KiB of the first filesystem line of `df -P -k`, in bytes; null when there is none. */
export function parseDfUsed(text: string): number | null {
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const used = Number(fields[2]);
    if (fields.length >= 6 && Number.isInteger(used) && used >= 0) return used * 1024;
  }
  return null;
}

/**
 * Disk and network usage as seen from inside a running sandbox (its own network namespace's
 * `/proc/net/dev`, `df` of its root), through the driver's exec: drivers report CPU, memory and
 * pids, not these. The probe is bounded (64 KiB of output, 3 s) and what it prints is parsed
 * strictly; a sandbox without `cat`/`df`, or one that lies, only gets null or wrong figures for
 * itself. Never throws: an unreadable figure is null.
 */
export async function readInsideUsage(runtime: SandboxRuntime, runtimeId: string): Promise<InsideUsage> {
  const none: InsideUsage = { diskUsedBytes: null, network: null };
  let text = '';
  try {
    const proc = await runtime.exec(runtimeId, { argv: ['/bin/sh', '-c', PROBE] });
    proc.stderr.resume();
    proc.stdout.on('data', (chunk: Buffer) => {
      if (text.length < MAX_PROBE_BYTES) text += chunk.toString('utf8');
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      proc.wait().then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), PROBE_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    if (timedOut) {
      await proc.kill('SIGKILL').catch(() => undefined);
      return none;
    }
  } catch {
    return none;
  }
  const [netDev = '', df = ''] = text.slice(0, MAX_PROBE_BYTES).split('@@corral-df@@');
  return { diskUsedBytes: parseDfUsed(df), network: parseNetDev(netDev) };
}

import type { EgressLogEntry } from '../runtime.js';

/** How many entries each sandbox's log keeps (the oldest are dropped first). */
export const EGRESS_LOG_CAPACITY = 1000;

export { DEFAULT_NFLOG_GROUP } from '../../config.js';

/**
 * The prefix of every firewall log line: `corral-eg <tag> <verdict> ` where `<tag>` is the
 * sandbox's firewall tag (12 hex digits, see `egressTag`) and `<verdict>` `allowed` or `denied`.
 */
export const EGRESS_LOG_PREFIX = 'corral-eg';

/** The log prefix for `tag` and `verdict` (at most 36 characters, under netfilter's 64). */
export function egressLogPrefix(tag: string, verdict: EgressLogEntry['verdict']): string {
  return `${EGRESS_LOG_PREFIX} ${tag} ${verdict} `;
}

/** Reads a prefix made by {@link egressLogPrefix}; undefined for anything else. */
export function parseEgressLogPrefix(prefix: string): { tag: string; verdict: EgressLogEntry['verdict'] } | undefined {
  const match = /^corral-eg ([0-9a-f]{12}) (allowed|denied)\s*$/.exec(prefix);
  if (!match) return undefined;
  return { tag: match[1] as string, verdict: match[2] as EgressLogEntry['verdict'] };
}

/** One packet the firewall logged, as the connection logger reports it. */
export interface LoggedPacket {
  /** The log prefix (see {@link egressLogPrefix}). */
  prefix: string;
  src: string;
  dst: string;
  /** `tcp`, `udp`, `icmp`… */
  protocol: string;
  /** Destination port; null for protocols without ports. */
  dport: number | null;
}

/** Where the connection logger delivers what it reads. */
export interface ConnectionLogSink {
  recordPacket(packet: LoggedPacket): void;
}

/** A bounded ring of one sandbox's entries. */
export class EgressLogRing {
  private readonly entries: EgressLogEntry[] = [];
  private start = 0;

  constructor(private readonly capacity = EGRESS_LOG_CAPACITY) {}

  push(entry: EgressLogEntry): void {
    if (this.entries.length < this.capacity) this.entries.push(entry);
    else {
      this.entries[this.start] = entry;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  /** The newest `limit` entries, oldest first. */
  recent(limit: number): EgressLogEntry[] {
    const ordered = [...this.entries.slice(this.start), ...this.entries.slice(0, this.start)];
    return limit <= 0 ? [] : ordered.slice(-limit);
  }
}

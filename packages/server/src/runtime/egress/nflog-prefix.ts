import type { EgressLogEntry } from '../runtime.js';
import type { NflogRecord } from './nflog-reader.js';

/**
 * The NFLOG group egress rules log to when `CORRAL_EGRESS_NFLOG_GROUP` is not set. A group has one
 * reader per network namespace, so servers sharing a host need different groups.
 */
export const DEFAULT_NFLOG_GROUP = 1637;

/** What an egress rule decided about a connection attempt. */
export type EgressVerdict = 'allowed' | 'denied';

/**
 * The log prefix of egress rules: `"<tag> <verdict>"`, one space between, nothing else.
 *
 * - `<tag>` names the sandbox the packet came from, in whatever way the enforcing driver chooses
 *   (its resolver maps it back, see {@link egressLogEntryFromNflog}): 1 to 100 characters of
 *   `A-Z a-z 0-9 _ . : -`, so the prefix fits nftables' 127-byte limit.
 * - `<verdict>` is `allowed` (the rule accepts the packet) or `denied` (it drops or rejects it).
 *
 * Build prefixes with {@link nflogPrefix}; an nftables rule then reads, for example,
 * `ip saddr 10.88.0.5 log group 1637 prefix "sb1 allowed" accept`.
 */
export const NFLOG_PREFIX_FORMAT = '<tag> <verdict>';

const TAG = /^[A-Za-z0-9_.:-]{1,100}$/;
const PREFIX = /^([A-Za-z0-9_.:-]{1,100}) (allowed|denied)$/;

/** The log prefix for `tag` and `verdict` ({@link NFLOG_PREFIX_FORMAT}); throws on a tag outside the format. */
export function nflogPrefix(tag: string, verdict: EgressVerdict): string {
  if (!TAG.test(tag)) throw new RangeError(`NFLOG tag must be 1 to 100 characters of A-Z a-z 0-9 _ . : -, got ${JSON.stringify(tag)}`);
  return `${tag} ${verdict}`;
}

/** Tag and verdict of a prefix in {@link NFLOG_PREFIX_FORMAT}, or null for any other prefix. */
export function parseNflogPrefix(prefix: string): { tag: string; verdict: EgressVerdict } | null {
  const match = PREFIX.exec(prefix);
  if (match === null) return null;
  return { tag: match[1] ?? '', verdict: match[2] === 'allowed' ? 'allowed' : 'denied' };
}

/**
 * The egress log entry (`kind: 'connect'`) for one logged packet, and the sandbox it belongs to
 * as `resolveTag` names it. Null when the prefix is not in {@link NFLOG_PREFIX_FORMAT} (another
 * rule logging to the group) or `resolveTag` knows no sandbox by that tag (one already removed).
 */
export function egressLogEntryFromNflog<Sandbox>(
  record: NflogRecord,
  resolveTag: (tag: string) => Sandbox | undefined,
): { sandbox: Sandbox; entry: EgressLogEntry } | null {
  const parsed = parseNflogPrefix(record.prefix);
  if (parsed === null) return null;
  const sandbox = resolveTag(parsed.tag);
  if (sandbox === undefined) return null;
  return {
    sandbox,
    entry: {
      at: record.at.toISOString(),
      kind: 'connect',
      destination: record.dst,
      port: record.dport,
      protocol: record.protocol,
      verdict: parsed.verdict,
    },
  };
}

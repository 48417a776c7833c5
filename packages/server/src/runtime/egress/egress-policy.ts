import { BlockList, isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * A sandbox's egress policy, in Prime's shape: at most one list is non-null.
 * - both null: egress is open;
 * - `allowlist` (possibly empty): only what it names is reachable; `[]` is no egress at all;
 * - `denylist` (possibly empty): everything but what it names is reachable.
 *
 * Entries are domain names (`api.example.com`), leftmost wildcards (`*.example.com`: any name
 * below it, at any depth, not the name itself), IPv4/IPv6 addresses and CIDRs.
 */
export interface EgressPolicy {
  allowlist: string[] | null;
  denylist: string[] | null;
}

/** The open policy: no list. */
export const OPEN_EGRESS: EgressPolicy = Object.freeze({ allowlist: null, denylist: null }) as EgressPolicy;

/** The most entries one list may hold (the Prime SDK's `MAX_EGRESS_POLICY_ENTRIES`). */
export const MAX_EGRESS_POLICY_ENTRIES = 256;

/** One parsed list entry. */
export type EgressEntry =
  | { kind: 'domain'; /** Lower case, no trailing dot, without the `*.`. */ name: string; wildcard: boolean }
  | { kind: 'network'; family: 4 | 6; address: string; prefix: number };

/** Why an entry was refused, for a 422 naming the field. */
export interface EgressEntryProblem {
  /** `network_allowlist[3]`-style path of the entry. */
  field: string;
  reason: string;
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * Parses one entry, or says why it is not one: no schemes, ports, paths, credentials, bare `*`
 * or wildcards other than a leftmost `*.`.
 */
export function parseEgressEntry(raw: string): EgressEntry | { error: string } {
  const text = raw.trim();
  if (text === '') return { error: 'must not be empty' };
  if (text.length > 253 + 4) return { error: 'is longer than a domain name can be' };
  if (text.includes('://')) return { error: 'schemes are not supported: give a domain, an IP address or a CIDR' };
  if (text.includes('@')) return { error: 'credentials are not supported' };
  if (/[?#]/.test(text)) return { error: 'query strings and fragments are not supported' };
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const family = isIP(address);
  if (family === 4 || family === 6) {
    const max = family === 4 ? 32 : 128;
    let prefix = max;
    if (slash !== -1) {
      const prefixText = text.slice(slash + 1);
      if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return { error: `has an invalid prefix length (0–${max})` };
      prefix = Number(prefixText);
    }
    return { kind: 'network', family, address: networkAddress(address, family, prefix), prefix };
  }
  if (slash !== -1) return { error: 'paths are not supported, and a CIDR needs an IP address before the /' };
  if (text.includes(':')) return { error: 'ports are not supported (and this is not an IPv6 address)' };
  if (text === '*') return { error: 'a bare "*" is not supported: use no list for open egress, or an empty allow list for none' };
  const wildcard = text.startsWith('*.');
  const name = (wildcard ? text.slice(2) : text).toLowerCase().replace(/\.$/, '');
  if (name.includes('*')) return { error: 'only a leftmost "*." wildcard is supported' };
  if (name.length > 253) return { error: 'is longer than a domain name can be' };
  const labels = name.split('.');
  const bad = labels.find((label) => !LABEL.test(label));
  if (bad !== undefined) return { error: bad === '' ? 'has an empty label' : `has an invalid label "${bad}"` };
  return { kind: 'domain', name, wildcard };
}

/** The first address of the network `address/prefix`, in canonical text. */
function networkAddress(address: string, family: 4 | 6, prefix: number): string {
  const cidr = `${address}/${prefix}`;
  return (family === 4 ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr)).toString();
}

/**
 * Checks a policy as a create or a PUT gives it: at most one list, at most
 * `MAX_EGRESS_POLICY_ENTRIES` entries, every entry parseable. `fields` names the two lists as the
 * request spells them. Returns every problem (empty when the policy is valid).
 */
export function egressPolicyProblems(
  policy: EgressPolicy,
  fields: { allowlist: string; denylist: string } = { allowlist: 'allowlist', denylist: 'denylist' },
): EgressEntryProblem[] {
  if (policy.allowlist !== null && policy.denylist !== null) {
    return [{ field: fields.denylist, reason: `${fields.allowlist} and ${fields.denylist} are mutually exclusive: give one of them` }];
  }
  const problems: EgressEntryProblem[] = [];
  for (const key of ['allowlist', 'denylist'] as const) {
    const list = policy[key];
    if (list === null) continue;
    if (list.length > MAX_EGRESS_POLICY_ENTRIES) {
      problems.push({ field: fields[key], reason: `has ${list.length} entries; at most ${MAX_EGRESS_POLICY_ENTRIES} are allowed` });
      continue;
    }
    list.forEach((entry, i) => {
      const parsed = parseEgressEntry(entry);
      if ('error' in parsed) problems.push({ field: `${fields[key]}[${i}]`, reason: `${JSON.stringify(entry)} ${parsed.error}` });
    });
  }
  return problems;
}

/** A policy with every entry trimmed and lower-cased, duplicates dropped, in the order given. */
export function normalizeEgressPolicy(policy: EgressPolicy): EgressPolicy {
  const normalize = (list: string[] | null): string[] | null =>
    list === null ? null : [...new Set(list.map((entry) => entry.trim().toLowerCase().replace(/\.$/, '')))];
  return { allowlist: normalize(policy.allowlist), denylist: normalize(policy.denylist) };
}

/**
 * A policy ready for enforcement: which names and which addresses it names, and what it does
 * with them. Drivers build their resolver and firewall rules from it.
 */
export class CompiledEgressPolicy {
  /** `open`: no list; `allow`: only what the entries name; `deny`: all but what they name. */
  readonly mode: 'open' | 'allow' | 'deny';
  /** The domain entries. */
  readonly domains: ReadonlyArray<{ name: string; wildcard: boolean }>;
  /** The address and CIDR entries. */
  readonly networks: ReadonlyArray<{ family: 4 | 6; address: string; prefix: number }>;
  private readonly blockList = new BlockList();

  constructor(readonly policy: EgressPolicy) {
    const list = policy.allowlist ?? policy.denylist;
    this.mode = policy.allowlist !== null ? 'allow' : policy.denylist !== null ? 'deny' : 'open';
    const domains: Array<{ name: string; wildcard: boolean }> = [];
    const networks: Array<{ family: 4 | 6; address: string; prefix: number }> = [];
    for (const entry of list ?? []) {
      const parsed = parseEgressEntry(entry);
      if ('error' in parsed) throw new Error(`invalid egress entry ${JSON.stringify(entry)}: ${parsed.error}`);
      if (parsed.kind === 'domain') domains.push({ name: parsed.name, wildcard: parsed.wildcard });
      else {
        networks.push({ family: parsed.family, address: parsed.address, prefix: parsed.prefix });
        this.blockList.addSubnet(parsed.address, parsed.prefix, parsed.family === 4 ? 'ipv4' : 'ipv6');
      }
    }
    this.domains = domains;
    this.networks = networks;
  }

  /** Whether a domain entry names `name` (an exact entry, or a wildcard above it). */
  listsName(name: string): boolean {
    const n = name.toLowerCase().replace(/\.$/, '');
    return this.domains.some((d) => (d.wildcard ? n.endsWith(`.${d.name}`) : n === d.name));
  }

  /** Whether an address or CIDR entry covers `address`. */
  listsAddress(address: string): boolean {
    const family = isIP(address);
    if (family === 0) return false;
    return this.blockList.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }

  /** Whether a sandbox may resolve `name` (and then reach what it resolves to). */
  allowsName(name: string): boolean {
    if (this.mode === 'open') return true;
    return this.mode === 'allow' ? this.listsName(name) : !this.listsName(name);
  }

  /**
   * Whether a sandbox may connect to `address` by the address entries alone (an allow-list
   * sandbox also reaches addresses its allowed names resolved to; the resolver adds those).
   */
  allowsAddress(address: string): boolean {
    if (this.mode === 'open') return true;
    return this.mode === 'allow' ? this.listsAddress(address) : !this.listsAddress(address);
  }
}

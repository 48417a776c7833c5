import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ToolError, runTool } from './run-tool.js';

/** `iptables` or `ip6tables`. */
export type Firewall = 'iptables' | 'ip6tables';

/** Exit status of `iptables -C` when the rule is not there (anything else is a real failure, a lock timeout say). */
const RULE_MISSING = 1;

/**
 * Accepts a sandbox's DNS that the egress firewall redirected to Corral's resolver on the host
 * (conntrack DNAT from port 53). Drivers put it first in their INPUT chains, ahead of their DROP of
 * everything new from the bridge, so it holds whatever order the chains are jumped to in.
 */
export function redirectedDnsAccept(bridge: string): string[][] {
  return ['udp', 'tcp'].map((protocol) => ['-i', bridge, '-p', protocol, '-m', 'conntrack', '--ctstate', 'DNAT', '--ctorigdstport', '53', '-j', 'ACCEPT']);
}

/**
 * Creates or replaces user chains of a table (default filter) in one atomic commit
 * (`iptables-restore --noflush`: a declared chain is emptied and refilled within the same commit,
 * other chains are left alone), so no packet ever sees a chain half filled.
 */
export async function replaceChains(binary: Firewall, chains: Record<string, string[][]>, table = 'filter'): Promise<void> {
  const lines = [`*${table}`, ...Object.keys(chains).map((chain) => `:${chain} - [0:0]`)];
  for (const [chain, rules] of Object.entries(chains)) for (const rule of rules) lines.push(['-A', chain, ...rule].join(' '));
  lines.push('COMMIT', '');
  const dir = await mkdtemp(join(tmpdir(), 'corral-fw-'));
  try {
    const file = join(dir, 'rules');
    await writeFile(file, lines.join('\n'), { mode: 0o600 });
    await runTool(`${binary}-restore`, ['-w', '5', '--noflush', file]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Makes `from` (a built-in chain of `table`) jump to `to` first, unless it already jumps there.
 * Only a missing rule inserts one: a failed check (the xtables lock busy) is an error, not a reason
 * to insert a second jump ahead of other chains.
 */
export async function ensureJump(table: string, from: string, to: string, binary: Firewall = 'iptables'): Promise<void> {
  try {
    await runTool(binary, ['-w', '5', '-t', table, '-C', from, '-j', to]);
  } catch (error) {
    if (!(error instanceof ToolError) || error.exitCode !== RULE_MISSING) throw error;
    await runTool(binary, ['-w', '5', '-t', table, '-I', from, '1', '-j', to]);
  }
}

/** Whether the host kernel has IPv6 (without it there is nothing to turn off or filter). */
export function hostHasIpv6(): boolean {
  return existsSync('/proc/sys/net/ipv6');
}

/** `192.0.2.2/24` → `192.0.2.0/24`. */
export function networkOf(cidr: string): string {
  const [address, bitsText] = cidr.split('/');
  const bits = Number(bitsText);
  const octets = (address ?? '').split('.').map(Number);
  const value = ((octets[0] ?? 0) << 24) | ((octets[1] ?? 0) << 16) | ((octets[2] ?? 0) << 8) | (octets[3] ?? 0);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  const network = (value & mask) >>> 0;
  return `${network >>> 24}.${(network >>> 16) & 255}.${(network >>> 8) & 255}.${network & 255}/${bits}`;
}

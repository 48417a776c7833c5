import { createHash, randomInt } from 'node:crypto';
import { runTool } from '../run-tool.js';
import type { CompiledEgressPolicy } from './egress-policy.js';
import { DEFAULT_NFLOG_GROUP, egressLogPrefix } from './egress-log.js';

/** Where the firewall is: the bridge sandboxes hang off and its gateway address (where the resolver listens). */
export interface EgressFirewallOptions {
  /** Names the table: one table per driver instance. */
  instance: string;
  bridgeName: string;
  gateway: string;
  /** The NFLOG group connection attempts are logged to (default {@link DEFAULT_NFLOG_GROUP}). */
  nflogGroup?: number;
}

/** Most changes merged into one transaction (a failed merge is retried change by change). */
const MAX_MERGED_CHANGES = 64;

/** Connection attempts logged per second per rule at most (the rest pass or fail unlogged). */
const LOG_RATE = 'limit rate 20/second burst 40 packets';

/** The nftables table name of a driver instance: `corral_eg_<8 hex>`. */
export function egressTableName(instance: string): string {
  return `corral_eg_${createHash('sha256').update(instance).digest('hex').slice(0, 8)}`;
}

/** A sandbox's firewall tag (12 hex digits): names its chains and sets and appears in its log prefix. */
export function egressTag(instance: string, key: string): string {
  return createHash('sha256').update(`${instance}\0${key}`).digest('hex').slice(0, 12);
}

/** What the firewall holds for one sandbox. */
interface SandboxRules {
  tag: string;
  ip: string;
  generation: number;
}

/**
 * One nftables table per driver instance (`inet corral_eg_<hash>`), changed only by atomic
 * `nft -f` transactions:
 * - `prerouting` (nat): a sandbox's DNS to the gateway's port 53 (UDP and TCP) goes to the
 *   resolver's port (`dns_clients` set);
 * - `forward` (filter): every packet from a sandbox address jumps to that sandbox's chain
 *   (`sandboxes` verdict map). Packets must pass every base chain of a hook, so a reject here
 *   holds whatever the iptables rules accept; replies (other source addresses) pass untouched.
 * A sandbox's chain `s_<tag>`, under an allow or a deny list:
 * - DNS (port 53, TCP or UDP) to anything but the resolver is rejected;
 * - a packet of a connection its current policy already let through (`ct mark` = the sandbox's
 *   policy generation) passes. Every other packet — a new connection, or one opened under an
 *   older policy — is checked: allow list: destinations in `a_<tag>` (addresses allowed names
 *   resolved to, each with its timeout) or in the policy's CIDRs pass and are marked; the rest
 *   get a TCP reset (other protocols: ICMP admin-prohibited). Deny list: the policy's CIDRs and
 *   `d_<tag>` (addresses denied names resolved to) are rejected, the rest pass and are marked.
 *   So a policy change (a new generation) cuts established connections it no longer allows.
 * - New connections and rejected packets are logged (`log group <nflogGroup>`, prefix
 *   `corral-eg <tag> allowed|denied`, rate-limited).
 * An open policy leaves the chain empty (DNS still goes through the resolver, which logs it).
 */
export class EgressFirewall {
  readonly table: string;
  private readonly sandboxes = new Map<string, SandboxRules>();
  private generation = randomInt(1, 0x3fffffff);
  /** Changes waiting for the running transaction to end, in the order they were asked for. */
  private readonly pending: Array<{ lines: string[]; done: (error?: unknown) => void }> = [];
  private draining = false;
  /** nftables transactions run so far (each an `nft -f` process; they share one queue with the resolver's updates). */
  transactions = 0;

  constructor(private readonly options: EgressFirewallOptions) {
    this.table = egressTableName(options.instance);
  }

  private get nflogGroup(): number {
    return this.options.nflogGroup ?? DEFAULT_NFLOG_GROUP;
  }

  /**
   * Creates the table (keeping what a previous process left in it: chains and resolved addresses
   * of sandboxes it still runs) and points the DNS redirection at `resolverPort`.
   */
  async start(resolverPort: number): Promise<void> {
    const t = `inet ${this.table}`;
    const { bridgeName: br, gateway: gw } = this.options;
    await this.commit([
      `add table ${t}`,
      `add map ${t} sandboxes { type ipv4_addr : verdict; }`,
      `add set ${t} dns_clients { type ipv4_addr; }`,
      `add chain ${t} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
      `add chain ${t} forward { type filter hook forward priority filter; policy accept; }`,
      `flush chain ${t} prerouting`,
      `flush chain ${t} forward`,
      `add rule ${t} prerouting iifname "${br}" ip saddr @dns_clients ip daddr ${gw} udp dport 53 dnat ip to ${gw}:${resolverPort}`,
      `add rule ${t} prerouting iifname "${br}" ip saddr @dns_clients ip daddr ${gw} tcp dport 53 dnat ip to ${gw}:${resolverPort}`,
      `add rule ${t} forward iifname "${br}" ip saddr vmap @sandboxes`,
    ]);
  }

  /** The tag of the sandbox `key`. */
  tagOf(key: string): string {
    return egressTag(this.options.instance, key);
  }

  /**
   * Installs or replaces the rules of sandbox `key` at `ip` in one transaction. `keep` are the
   * resolved addresses (with seconds left) to hold in its allowed set; every other one is dropped.
   */
  async apply(key: string, ip: string, policy: CompiledEgressPolicy, keep: Array<{ address: string; seconds: number }>): Promise<void> {
    const t = `inet ${this.table}`;
    const tag = this.tagOf(key);
    const generation = this.nextGeneration();
    const previous = this.sandboxes.get(key);
    const mark = `0x${generation.toString(16)}`;
    const v4 = policy.networks.filter((n) => n.family === 4).map((n) => `${n.address}/${n.prefix}`);
    const chain = `${t} s_${tag}`;
    const lines = [
      `add set ${t} a_${tag} { type ipv4_addr; flags timeout; }`,
      `add set ${t} d_${tag} { type ipv4_addr; flags timeout; }`,
      `add chain ${t} s_${tag}`,
      `add chain ${t} r_${tag}`,
      `flush chain ${chain}`,
      `flush chain ${t} r_${tag}`,
      `add rule ${t} r_${tag} ${LOG_RATE} log group ${this.nflogGroup} prefix "${egressLogPrefix(tag, 'denied')}"`,
      `add rule ${t} r_${tag} meta l4proto tcp reject with tcp reset`,
      `add rule ${t} r_${tag} reject with icmpx admin-prohibited`,
      `flush set ${t} a_${tag}`,
      ...(keep.length > 0 ? [`add element ${t} a_${tag} { ${keep.map((k) => `${k.address} timeout ${Math.max(1, Math.ceil(k.seconds))}s`).join(', ')} }`] : []),
    ];
    const logAllowed = `ct state new ${LOG_RATE} log group ${this.nflogGroup} prefix "${egressLogPrefix(tag, 'allowed')}"`;
    if (policy.mode !== 'open') {
      lines.push(
        `add rule ${chain} meta l4proto { tcp, udp } th dport 53 goto r_${tag}`,
        `add rule ${chain} ct mark ${mark} accept`,
      );
      if (policy.mode === 'allow') {
        lines.push(`add rule ${chain} ip daddr @a_${tag} ${logAllowed}`, `add rule ${chain} ip daddr @a_${tag} ct mark set ${mark} accept`);
        if (v4.length > 0) {
          lines.push(`add rule ${chain} ip daddr { ${v4.join(', ')} } ${logAllowed}`, `add rule ${chain} ip daddr { ${v4.join(', ')} } ct mark set ${mark} accept`);
        }
        lines.push(`add rule ${chain} goto r_${tag}`);
      } else {
        if (v4.length > 0) lines.push(`add rule ${chain} ip daddr { ${v4.join(', ')} } goto r_${tag}`);
        lines.push(`add rule ${chain} ip daddr @d_${tag} goto r_${tag}`, `add rule ${chain} ${logAllowed}`, `add rule ${chain} ct mark set ${mark} accept`);
      }
    }
    if (previous && previous.ip !== ip) {
      lines.push(`delete element ${t} sandboxes { ${previous.ip} }`, `delete element ${t} dns_clients { ${previous.ip} }`);
    }
    if (!previous || previous.ip !== ip) {
      lines.push(`add element ${t} sandboxes { ${ip} : jump s_${tag} }`, `add element ${t} dns_clients { ${ip} }`);
    }
    await this.commit(lines);
    this.sandboxes.set(key, { tag, ip, generation });
  }

  /** Opens (`allowed`) or closes (`denied`, deny lists) resolved addresses for `seconds`; refreshes the timeout of present ones. */
  async addResolved(key: string, set: 'allowed' | 'denied', addresses: string[], seconds: number): Promise<void> {
    const rules = this.sandboxes.get(key);
    if (!rules || addresses.length === 0) return;
    const name = `inet ${this.table} ${set === 'allowed' ? 'a' : 'd'}_${rules.tag}`;
    const list = addresses.join(', ');
    const timed = addresses.map((a) => `${a} timeout ${Math.max(1, Math.ceil(seconds))}s`).join(', ');
    // add (no-op when present), delete, add again: the timeout starts over, in one transaction.
    await this.commit([`add element ${name} { ${list} }`, `delete element ${name} { ${list} }`, `add element ${name} { ${timed} }`]);
  }

  /**
   * Removes everything of sandbox `key` (idempotent). A sandbox it holds no rules for (none
   * applied, or removed already) costs nothing: what a previous process left is retainOnly's.
   */
  async remove(key: string): Promise<void> {
    const rules = this.sandboxes.get(key);
    if (!rules) return;
    const tag = this.tagOf(key);
    const t = `inet ${this.table}`;
    this.sandboxes.delete(key);
    // Everything apply() made, in one transaction; piece by piece if that fails (something was missing).
    const all = [
      `delete element ${t} sandboxes { ${rules.ip} }`,
      `delete element ${t} dns_clients { ${rules.ip} }`,
      `flush chain ${t} s_${tag}`,
      `delete chain ${t} s_${tag}`,
      `flush chain ${t} r_${tag}`,
      `delete chain ${t} r_${tag}`,
      `delete set ${t} a_${tag}`,
      `delete set ${t} d_${tag}`,
    ];
    if (await this.commit(all).then(() => true, () => false)) return;
    await this.commit(all.slice(0, 1)).catch(() => undefined);
    await this.commit(all.slice(1, 2)).catch(() => undefined);
    await this.dropObjects(tag);
  }

  /** Deletes a tag's chains and sets, ignoring those that do not exist. */
  private async dropObjects(tag: string): Promise<void> {
    const t = `inet ${this.table}`;
    await this.commit([`flush chain ${t} s_${tag}`, `delete chain ${t} s_${tag}`]).catch(() => undefined);
    await this.commit([`flush chain ${t} r_${tag}`, `delete chain ${t} r_${tag}`]).catch(() => undefined);
    await this.commit([`delete set ${t} a_${tag}`]).catch(() => undefined);
    await this.commit([`delete set ${t} d_${tag}`]).catch(() => undefined);
  }

  /**
   * Removes what the table holds for sandboxes other than `keys` (left by a previous process):
   * map and set elements, chains and sets.
   */
  async retainOnly(keys: string[]): Promise<void> {
    const keepTags = new Set(keys.map((k) => this.tagOf(k)));
    const keepIps = new Set([...this.sandboxes.values()].map((r) => r.ip));
    const listing = await runTool('nft', ['-j', 'list', 'table', 'inet', this.table]).catch(() => undefined);
    if (!listing) return;
    const parsed = JSON.parse(listing.stdout) as { nftables?: Array<Record<string, { name?: string; elem?: unknown[] }>> };
    const tags = new Set<string>();
    const staleIps: string[] = [];
    for (const item of parsed.nftables ?? []) {
      const object = item.chain ?? item.set;
      const match = object?.name ? /^[sard]_([0-9a-f]{12})$/.exec(object.name) : null;
      if (match?.[1] && !keepTags.has(match[1])) tags.add(match[1]);
      const set = item.set ?? item.map;
      if (set?.name === 'dns_clients' || set?.name === 'sandboxes') {
        for (const elem of set.elem ?? []) {
          const ip = typeof elem === 'string' ? elem : Array.isArray(elem) ? elem[0] : undefined;
          if (typeof ip === 'string' && !keepIps.has(ip)) staleIps.push(`${set.name} ${ip}`);
        }
      }
    }
    for (const stale of staleIps) {
      const [set, ip] = stale.split(' ');
      await this.commit([`delete element inet ${this.table} ${set} { ${ip} }`]).catch(() => undefined);
    }
    for (const tag of tags) await this.dropObjects(tag);
  }

  /** Deletes the whole table (when the driver's last sandbox is gone and it closes for good). */
  async destroy(): Promise<void> {
    await this.commit([`delete table inet ${this.table}`]).catch(() => undefined);
    this.sandboxes.clear();
  }

  private nextGeneration(): number {
    this.generation = this.generation >= 0x3fffffff ? 1 : this.generation + 1;
    return this.generation;
  }

  /**
   * Runs `lines` as one atomic nftables change. Changes are applied in the order asked for; those
   * asked for while a transaction runs go out together in the next one (an `nft -f` process costs
   * tens of milliseconds, more on a loaded host, and the resolver's answers wait on theirs). When a
   * merged transaction fails, its changes are run one by one, so only the failing one fails.
   */
  private commit(lines: string[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ lines, done: (error) => (error === undefined ? resolve() : reject(error)) });
      if (!this.draining) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, MAX_MERGED_CHANGES);
        const failed = await this.run(batch.flatMap((change) => change.lines));
        if (failed === undefined || batch.length === 1) {
          for (const change of batch) change.done(failed);
          continue;
        }
        for (const change of batch) change.done(await this.run(change.lines));
      }
    } finally {
      this.draining = false;
    }
  }

  /** One `nft -f` transaction; the error when it failed. */
  private async run(lines: string[]): Promise<unknown> {
    this.transactions++;
    try {
      await runTool('nft', ['-f', '-'], { input: `${lines.join('\n')}\n` });
      return undefined;
    } catch (error) {
      return error ?? new Error('nft failed');
    }
  }
}

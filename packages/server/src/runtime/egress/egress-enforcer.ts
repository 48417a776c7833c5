import { readFile } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import { runTool } from '../run-tool.js';
import type { EgressLogEntry } from '../runtime.js';
import { EgressFirewall } from './egress-firewall.js';
import { EgressLogRing, parseEgressLogPrefix } from './egress-log.js';
import type { ConnectionLogSink, LoggedPacket } from './egress-log.js';
import { CompiledEgressPolicy } from './egress-policy.js';
import type { EgressPolicy } from './egress-policy.js';
import { EgressResolver } from './egress-resolver.js';
import { NflogReader } from './nflog-reader.js';
import type { ResolvedAddress, ResolverClient } from './egress-resolver.js';

/** Default floor of how long a resolved address stays open, in seconds (answers with a shorter TTL are held this long). */
export const DEFAULT_EGRESS_TTL_FLOOR_SECONDS = 60;
/** The longest a resolved address stays open after one answer, whatever its TTL. */
const TTL_CAP_SECONDS = 86_400;
/** The iptables chain (filter table, jumped to first from INPUT) that lets redirected sandbox DNS reach the resolver. */
export const EGRESS_DNS_INPUT_CHAIN = 'CORRAL-EGRESS-DNS';

/** Settings of an {@link EgressEnforcer}. */
export interface EgressEnforcerOptions {
  /** The driver instance: names the firewall table. */
  instance: string;
  /** The bridge sandboxes hang off. */
  bridgeName: string;
  /** The bridge's address: the sandboxes' gateway and nameserver. */
  gateway: string;
  /** Upstream DNS server (`address[:port]`); default the host's first `nameserver` in /etc/resolv.conf. */
  upstream?: string;
  /** Resolved addresses stay open at least this long (seconds); default 60. */
  ttlFloorSeconds?: number;
  /**
   * Log connection attempts: the firewall logs them to this NFLOG group and a `corral-nflog`
   * receiver (compiled into `binDir`) reads them into the sandboxes' logs. Without it only DNS is logged.
   */
  connectionLog?: EgressConnectionLogOptions;
}

/** Where connection attempts are logged and read from. */
export interface EgressConnectionLogOptions {
  /** NFLOG group (`CORRAL_EGRESS_NFLOG_GROUP`). */
  group: number;
  /** Directory the receiver is compiled into. */
  binDir: string;
}

/** One sandbox as the enforcer sees it. */
interface SandboxState {
  key: string;
  /** Its bridge address; undefined while it has no network (an empty allow list). */
  ip: string | undefined;
  policy: CompiledEgressPolicy;
  log: EgressLogRing;
  /** Addresses its allowed names resolved to: when each stops being open, and for which names. */
  resolved: Map<string, { expires: number; names: Set<string> }>;
}

/**
 * Enforces egress policies for the sandboxes of one driver instance on one bridge: a resolver
 * (egress-resolver.ts) on the gateway that every sandbox's DNS is redirected to, an nftables
 * firewall (egress-firewall.ts) per sandbox, and a bounded log per sandbox of DNS answers and
 * (fed by the connection logger through {@link recordPacket}) connection attempts. Both drivers
 * use it the same way: `apply` before a sandbox's first process runs and on every policy change,
 * `remove` when it goes.
 */
export class EgressEnforcer implements ConnectionLogSink {
  private readonly resolver: EgressResolver;
  private readonly firewall: EgressFirewall;
  private readonly byKey = new Map<string, SandboxState>();
  private readonly byIp = new Map<string, SandboxState>();
  private readonly byTag = new Map<string, SandboxState>();
  private readonly ttlFloor: number;
  private started: Promise<void> | undefined;
  private reader: NflogReader | undefined;
  private connectionLogProblem: string | undefined;

  constructor(private readonly options: EgressEnforcerOptions) {
    this.ttlFloor = options.ttlFloorSeconds ?? DEFAULT_EGRESS_TTL_FLOOR_SECONDS;
    this.firewall = new EgressFirewall({
      instance: options.instance,
      bridgeName: options.bridgeName,
      gateway: options.gateway,
      ...(options.connectionLog ? { nflogGroup: options.connectionLog.group } : {}),
    });
    this.resolver = new EgressResolver({
      listenAddress: options.gateway,
      upstream: () => this.upstream(),
      clientOf: (source) => {
        const state = this.byIp.get(source);
        return state ? this.clientFor(state) : undefined;
      },
    });
  }

  /** The nftables table this enforcer owns. */
  get table(): string {
    return this.firewall.table;
  }

  /** Starts the resolver and installs the table; once (the bridge and its gateway address must exist). */
  start(): Promise<void> {
    this.started ??= (async () => {
      await this.resolver.start();
      await this.firewall.start(this.resolver.port);
      await ensureDnsInputAccept(this.options.bridgeName);
      await this.startConnectionLog();
    })().catch((error: unknown) => {
      this.started = undefined;
      throw error;
    });
    return this.started;
  }

  /**
   * Enforces `policy` for sandbox `key` at `ip` (undefined: it has no network now), replacing
   * what it had, in one firewall transaction; resolves once the rules are in. Addresses resolved
   * for names the new policy still allows stay open; the rest close, and established connections
   * the new policy does not allow are cut (their next packet gets a reset).
   */
  async apply(key: string, ip: string | undefined, policy: EgressPolicy): Promise<void> {
    await this.start();
    const compiled = new CompiledEgressPolicy(policy);
    const state = this.byKey.get(key) ?? { key, ip: undefined, policy: compiled, log: new EgressLogRing(), resolved: new Map() };
    const now = Date.now();
    for (const [address, entry] of state.resolved) {
      for (const name of entry.names) if (!compiled.allowsName(name) || compiled.mode !== 'allow') entry.names.delete(name);
      if (entry.names.size === 0 || entry.expires <= now) state.resolved.delete(address);
    }
    if (ip === undefined) await this.firewall.remove(key);
    else {
      const keep = [...state.resolved].map(([address, entry]) => ({ address, seconds: (entry.expires - now) / 1000 }));
      await this.firewall.apply(key, ip, compiled, keep);
    }
    if (state.ip !== undefined && state.ip !== ip) this.byIp.delete(state.ip);
    state.ip = ip;
    state.policy = compiled;
    this.byKey.set(key, state);
    this.byTag.set(this.firewall.tagOf(key), state);
    if (ip !== undefined) this.byIp.set(ip, state);
    if (compiled.mode === 'deny' && ip !== undefined) void this.closeDeniedNames(state);
  }

  /** Forgets sandbox `key` and removes its rules (idempotent). */
  async remove(key: string): Promise<void> {
    const state = this.byKey.get(key);
    if (state?.ip !== undefined) this.byIp.delete(state.ip);
    this.byKey.delete(key);
    this.byTag.delete(this.firewall.tagOf(key));
    if (this.started) await this.firewall.remove(key);
  }

  /** Removes firewall leftovers of sandboxes this enforcer does not know (after a restart). */
  async retainOnlyKnown(): Promise<void> {
    await this.start();
    await this.firewall.retainOnly([...this.byKey.keys()]);
  }

  /** The sandbox's newest `limit` log entries, oldest first (empty for one it does not know). */
  log(key: string, limit: number): EgressLogEntry[] {
    return this.byKey.get(key)?.log.recent(limit) ?? [];
  }

  /**
   * Starts reading the connection log. A group another process holds (another server on this
   * host) leaves connection attempts unlogged, with a warning, rather than stopping enforcement.
   */
  private async startConnectionLog(): Promise<void> {
    const settings = this.options.connectionLog;
    if (!settings || this.reader) return;
    const reader = new NflogReader({ group: settings.group, binDir: settings.binDir, onRecord: (record) => this.recordPacket(record) });
    try {
      await reader.start();
      this.reader = reader;
      this.connectionLogProblem = undefined;
    } catch (error) {
      this.connectionLogProblem = (error as Error).message;
      process.emitWarning(`egress connection attempts are not logged: ${this.connectionLogProblem}`);
    }
  }

  /** Why connection attempts are not being logged, when they are not. */
  get connectionLogStatus(): string | undefined {
    if (!this.options.connectionLog) return 'no connection log configured';
    return this.connectionLogProblem;
  }

  /** Records a connection attempt the firewall logged (the connection logger calls this). */
  recordPacket(packet: LoggedPacket & { at?: Date }): void {
    const parsed = parseEgressLogPrefix(packet.prefix);
    if (!parsed) return;
    const state = this.byTag.get(parsed.tag);
    state?.log.push({ at: (packet.at ?? new Date()).toISOString(), kind: 'connect', destination: packet.dst, port: packet.dport, protocol: packet.protocol, verdict: parsed.verdict });
  }

  /**
   * Stops the resolver. The firewall table stays while sandboxes run under it (a restarted driver
   * takes it over); with `dropTable` (no sandbox left) it is deleted.
   */
  async close(dropTable: boolean): Promise<void> {
    if (!this.started) return;
    await this.started.catch(() => undefined);
    await this.resolver.close();
    await this.reader?.close();
    this.reader = undefined;
    if (dropTable) await this.firewall.destroy();
    this.started = undefined;
  }

  private clientFor(state: SandboxState): ResolverClient {
    return {
      allowsName: (name) => state.policy.allowsName(name),
      onAllowed: async (name, addresses) => {
        if (state.policy.mode !== 'allow') return;
        const v4 = addresses.filter((a) => a.family === 4);
        if (v4.length === 0) return;
        const seconds = this.holdSeconds(v4);
        const now = Date.now();
        const expires = now + seconds * 1000;
        // Open for this name already, for more than half the hold: no firewall update (it costs a transaction).
        const fresh = v4.every((a) => {
          const entry = state.resolved.get(a.address);
          return entry !== undefined && entry.names.has(name) && entry.expires - now > (seconds * 1000) / 2;
        });
        if (!fresh) await this.firewall.addResolved(state.key, 'allowed', v4.map((a) => a.address), seconds);
        for (const a of v4) {
          const entry = state.resolved.get(a.address) ?? { expires, names: new Set<string>() };
          entry.expires = Math.max(entry.expires, expires);
          entry.names.add(name);
          state.resolved.set(a.address, entry);
        }
      },
      resolvesDenied: () => state.policy.mode === 'deny',
      onDenied: async (_name, addresses) => {
        if (state.policy.mode !== 'deny') return;
        const v4 = addresses.filter((a) => a.family === 4);
        await this.firewall.addResolved(state.key, 'denied', v4.map((a) => a.address), this.holdSeconds(v4));
      },
      record: (entry) => {
        state.log.push({
          at: new Date().toISOString(),
          kind: 'dns',
          destination: entry.name,
          port: 53,
          protocol: 'dns',
          verdict: entry.verdict,
          answers: entry.answers,
        });
      },
    };
  }

  /** How long to hold addresses of one answer open: its longest TTL, at least the floor, at most a day. */
  private holdSeconds(addresses: ResolvedAddress[]): number {
    return Math.min(TTL_CAP_SECONDS, Math.max(this.ttlFloor, ...addresses.map((a) => a.ttl)));
  }

  /** Deny lists, best effort: resolves the exact denied names once and closes what they point at. */
  private async closeDeniedNames(state: SandboxState): Promise<void> {
    const names = state.policy.domains.filter((d) => !d.wildcard).map((d) => d.name);
    if (names.length === 0) return;
    try {
      const resolver = new Resolver({ timeout: 2000, tries: 1 });
      resolver.setServers([await this.upstream()]);
      for (const name of names) {
        const records = await resolver.resolve4(name, { ttl: true }).catch(() => []);
        const addresses = records.map((r) => r.address).filter((a) => isIPv4(a));
        if (addresses.length > 0 && state.policy.mode === 'deny') {
          await this.firewall.addResolved(state.key, 'denied', addresses, this.holdSeconds(records.map((r) => ({ address: r.address, family: 4, ttl: r.ttl }))));
        }
      }
    } catch {
      // Best effort: the resolver still answers NXDOMAIN for these names.
    }
  }

  /** The upstream server: the setting, else the host's first nameserver. */
  private async upstream(): Promise<string> {
    if (this.options.upstream) return this.options.upstream;
    const host = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
    return /^\s*nameserver\s+(\S+)/m.exec(host)?.[1] ?? '8.8.8.8';
  }
}

/**
 * Makes sure redirected DNS from `bridge` (conntrack state DNAT, original port 53; only the egress
 * firewall redirects that) reaches the resolver on the host: the drivers' INPUT chains drop every
 * new connection from a sandbox bridge. A chain of its own, jumped to first from INPUT, so
 * refilling the drivers' chains leaves it alone.
 */
async function ensureDnsInputAccept(bridge: string): Promise<void> {
  const chain = EGRESS_DNS_INPUT_CHAIN;
  await runTool('iptables', ['-w', '5', '-n', '-L', chain]).catch(() => runTool('iptables', ['-w', '5', '-N', chain]).catch(() => undefined));
  for (const protocol of ['udp', 'tcp']) {
    const rule = ['-i', bridge, '-p', protocol, '-m', 'conntrack', '--ctstate', 'DNAT', '--ctorigdstport', '53', '-j', 'ACCEPT'];
    await runTool('iptables', ['-w', '5', '-C', chain, ...rule]).catch(() => runTool('iptables', ['-w', '5', '-A', chain, ...rule]));
  }
  await runTool('iptables', ['-w', '5', '-C', 'INPUT', '-j', chain]).catch(() => runTool('iptables', ['-w', '5', '-I', 'INPUT', '1', '-j', chain]));
}

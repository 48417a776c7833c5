import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { runTool } from '../run-tool.js';
import { ensureJump, hostHasIpv6, networkOf, redirectedDnsAccept, replaceChains } from '../host-firewall.js';
import { createOwnedNetns, removeKeptNamespace } from './userns.js';
import type { UsernsMapping } from './userns.js';

/** Where `ip netns` keeps named network namespaces. */
export const NETNS_DIR = '/run/netns';
/** Where the user namespaces owning them are kept (same names), when the pool makes them. */
export const USERNS_DIR = '/run/corral-oci/userns';

/** Settings of the shared sandbox bridge. */
export interface BridgeOptions {
  /** Linux bridge name (≤ 15 characters). Default `corral-oci0`. */
  bridgeName: string;
  /** IPv4 subnet, a /16 (`10.213.0.0/16`); the bridge takes `.0.1`. */
  subnet: string;
  /** Destinations sandboxes may never reach besides the host itself, link-local and the host's subnets. */
  extraBlockedCidrs: string[];
}

/** A prepared network namespace. */
export interface SandboxNetns {
  /** Name under /run/netns. */
  name: string;
  path: string;
  /** Sandbox address on the bridge, when networked. */
  ip: string | undefined;
  /** Host side of the veth pair, when networked. */
  hostVeth: string | undefined;
  /** The user namespace that owns it, when the pool has a mapping. */
  usernsPath?: string;
}

/** Filter chain jumped to first from INPUT: sandboxes cannot open connections to the host. */
export const OCI_INPUT_CHAIN = 'CORRAL-OCI-INPUT';
/** Filter chain jumped to first from FORWARD: egress policy of the sandbox bridge. */
export const OCI_FORWARD_CHAIN = 'CORRAL-OCI-FORWARD';
/** NAT chain jumped to from POSTROUTING: masquerade sandbox egress. */
export const OCI_NAT_CHAIN = 'CORRAL-OCI-NAT';

/**
 * Turns IPv6 off in a sandbox's network namespace, from inside it (`nsenter --net`; /proc/sys/net
 * shows the namespace of the process reading it): on `eth0` when present (which drops its
 * link-local address and routes) and for every interface made later (`default`). `lo` keeps `::1`,
 * which leads nowhere but the namespace itself and lets programs bind `localhost` on IPv6.
 */
async function disableIpv6(netnsPath: string, online: boolean, background: boolean): Promise<void> {
  if (!hostHasIpv6()) return;
  const conf = '/proc/sys/net/ipv6/conf';
  const writes = [`echo 1 > ${conf}/default/disable_ipv6`, ...(online ? [`echo 1 > ${conf}/eth0/disable_ipv6`] : [])];
  await runTool('nsenter', [`--net=${netnsPath}`, '--', 'sh', '-ec', writes.join('; ')], { background });
}

/** Sets `net.ipv6.conf.<iface>.disable_ipv6=1` on a host interface, when the host has IPv6. */
async function disableHostIpv6(iface: string): Promise<void> {
  if (hostHasIpv6()) await writeFile(`/proc/sys/net/ipv6/conf/${iface}/disable_ipv6`, '1');
}

const bridgeSetups = new Map<string, Promise<void>>();

/**
 * Network namespaces for sandboxes, made ahead of time:
 * - offline (`networkAccess: false`): a namespace with only `lo`, up;
 * - online: plus a veth pair whose host end is an *isolated* port of the shared bridge (isolated
 *   ports cannot exchange frames with each other, only with the bridge itself), an address on the
 *   bridge subnet and a default route via the bridge. The host masquerades egress; see
 *   {@link ensureBridge} for the firewall.
 * A few of each kind are kept ready (refilled in the background) so `create()` does not wait for
 * the ~35 ms of netlink work. Names are `co-<instance hash>-<random>`, so leftovers of one driver
 * instance can be found and removed after a restart. Addresses are leased with exclusive-create
 * files under `/run/corral-oci/<bridge>/leases/`, shared by every instance on the host.
 */
export class NetnsPool {
  private readonly ready: { online: SandboxNetns[]; offline: SandboxNetns[] } = { online: [], offline: [] };
  private readonly filling = new Map<'online' | 'offline', Promise<void>>();
  private closed = false;
  readonly prefix: string;
  private readonly leaseDir: string;
  private readonly gateway: string;
  private readonly prefixLength: number;
  /**
   * When set, each namespace is made inside a user namespace of its own with this mapping (kept at
   * `USERNS_DIR/<name>`), which a sandbox joins: see `createOwnedNetns`. Set it before the pool fills.
   */
  userns: UsernsMapping | null = null;
  /** While this says true (creates in flight), refilling waits: it would only compete with them for the CPU. */
  busy: () => boolean = () => false;
  /** `corral-agent`, which makes the owned namespaces; set with {@link userns}. */
  agentBinary = '';

  constructor(
    instance: string,
    readonly bridge: BridgeOptions,
    private readonly poolSize = 2,
  ) {
    this.prefix = `co-${createHash('sha256').update(instance).digest('hex').slice(0, 8)}-`;
    this.leaseDir = join('/run/corral-oci', bridge.bridgeName, 'leases');
    const [base, bits] = bridge.subnet.split('/');
    this.prefixLength = Number(bits);
    const octets = (base ?? '').split('.');
    this.gateway = `${octets[0]}.${octets[1]}.${octets[2]}.1`;
  }

  /** The bridge's own address: sandboxes' default gateway. */
  get gatewayAddress(): string {
    return this.gateway;
  }

  /** A namespace of the requested kind (pooled when one is ready). */
  async acquire(online: boolean): Promise<SandboxNetns> {
    const kind = online ? 'online' : 'offline';
    const ns = this.ready[kind].shift() ?? (await this.make(online));
    this.refill(kind);
    return ns;
  }

  /** Starts keeping namespaces of this kind ready. */
  warm(online: boolean): Promise<void> {
    const kind = online ? 'online' : 'offline';
    this.refill(kind);
    return this.filling.get(kind) ?? Promise.resolve();
  }

  private refill(kind: 'online' | 'offline'): void {
    if (this.closed || this.poolSize <= 0 || this.filling.has(kind)) return;
    const job = (async () => {
      while (!this.closed && this.ready[kind].length < this.poolSize) {
        if (this.busy()) await new Promise((r) => setTimeout(r, 20));
        else this.ready[kind].push(await this.make(kind === 'online', true));
      }
    })()
      .catch(() => undefined)
      .finally(() => this.filling.delete(kind));
    this.filling.set(kind, job);
  }

  /** Makes a namespace; `background`: at a lower CPU priority (a refill, not a create waiting). */
  private async make(online: boolean, background = false): Promise<SandboxNetns> {
    const id = randomBytes(4).toString('hex');
    const name = `${this.prefix}${id}`;
    const path = join(NETNS_DIR, name);
    const userns = this.userns;
    const usernsPath = userns ? join(USERNS_DIR, name) : undefined;
    if (!online) {
      if (userns && usernsPath) await createOwnedNetns(userns, usernsPath, path, this.agentBinary, background);
      else await runTool('ip', ['netns', 'add', name], { background });
      try {
        await runTool('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { background });
        await disableIpv6(path, false, background);
      } catch (error) {
        await this.destroy({ name, ip: undefined });
        throw error;
      }
      return { name, path, ip: undefined, hostVeth: undefined, usernsPath };
    }
    await ensureBridge(this.bridge);
    const ip = await this.lease(name);
    const hostVeth = `vc${id}`;
    try {
      if (userns && usernsPath) await createOwnedNetns(userns, usernsPath, path, this.agentBinary, background);
      await runTool('ip', ['-batch', '-'], {
        background,
        input: [
          ...(userns ? [] : [`netns add ${name}`]),
          `link add ${hostVeth} type veth peer name eth0 netns ${name}`,
          `link set ${hostVeth} master ${this.bridge.bridgeName}`,
          `link set dev ${hostVeth} type bridge_slave isolated on`,
          `link set ${hostVeth} up`,
        ].join('\n'),
      });
      await runTool('ip', ['-n', name, '-batch', '-'], {
        background,
        input: [
          'link set lo up',
          `addr add ${ip}/${this.prefixLength} dev eth0`,
          'link set eth0 up',
          `route add default via ${this.gateway}`,
        ].join('\n'),
      });
      await disableIpv6(path, true, background);
      await disableHostIpv6(hostVeth);
    } catch (error) {
      await this.destroy({ name, ip }).catch(() => undefined);
      throw error;
    }
    return { name, path, ip, hostVeth, usernsPath };
  }

  /**
   * Gives a running sandbox's offline namespace its network, live: a veth to the bridge, an
   * address and the default route (as {@link make} does for online ones). `beforeLink` runs once
   * the address is leased and before any link exists (the egress policy for it). Returns the new
   * fields.
   */
  async connect(ns: Pick<SandboxNetns, 'name'>, beforeLink?: (ip: string) => Promise<void>): Promise<{ ip: string; hostVeth: string }> {
    await ensureBridge(this.bridge);
    const ip = await this.lease(ns.name);
    const hostVeth = `vc${randomBytes(4).toString('hex')}`;
    try {
      await beforeLink?.(ip);
      await runTool('ip', ['-batch', '-'], {
        input: [
          `link add ${hostVeth} type veth peer name eth0 netns ${ns.name}`,
          `link set ${hostVeth} master ${this.bridge.bridgeName}`,
          `link set dev ${hostVeth} type bridge_slave isolated on`,
          `link set ${hostVeth} up`,
        ].join('\n'),
      });
      await disableIpv6(join(NETNS_DIR, ns.name), true, false);
      await disableHostIpv6(hostVeth);
      await runTool('ip', ['-n', ns.name, '-batch', '-'], {
        input: [`addr add ${ip}/${this.prefixLength} dev eth0`, 'link set eth0 up', `route add default via ${this.gateway}`].join('\n'),
      });
    } catch (error) {
      await runTool('ip', ['link', 'delete', hostVeth]).catch(() => undefined);
      await this.release(ns.name, ip);
      throw error;
    }
    return { ip, hostVeth };
  }

  /**
   * Takes over the network namespace process `pid` runs in (one CRIU made for a memory restore:
   * empty, owned by the restored user namespace) as a namespace of this pool: named under
   * /run/netns (`ip netns attach`), `lo` up, IPv6 off, and with `online` connected as
   * {@link connect} does. `beforeLink` runs before any link exists, with the leased address (none
   * offline). On failure nothing is left.
   */
  async adopt(pid: number, online: boolean, beforeLink: (ip: string | undefined) => Promise<void>): Promise<SandboxNetns> {
    const name = `${this.prefix}${randomBytes(4).toString('hex')}`;
    const path = join(NETNS_DIR, name);
    let connected: { ip: string; hostVeth: string } | undefined;
    try {
      await runTool('ip', ['netns', 'attach', name, String(pid)]);
      await runTool('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      await disableIpv6(path, false, false);
      if (online) connected = await this.connect({ name }, beforeLink);
      else await beforeLink(undefined);
    } catch (error) {
      await this.destroy({ name, ip: connected?.ip });
      throw error;
    }
    return { name, path, ip: connected?.ip, hostVeth: connected?.hostVeth };
  }

  /** Takes a running sandbox's network away, live: deletes its veth pair (and route) and frees its address. */
  async disconnect(ns: Pick<SandboxNetns, 'name' | 'ip'>): Promise<void> {
    await runTool('ip', ['-n', ns.name, 'link', 'delete', 'eth0']).catch(async (error: unknown) => {
      const links = await runTool('ip', ['-n', ns.name, '-o', 'link', 'show', 'eth0']).catch(() => undefined);
      if (links) throw error;
    });
    if (ns.ip !== undefined) await this.release(ns.name, ns.ip);
  }

  /** Frees `ip` when `owner` holds its lease. */
  private async release(owner: string, ip: string): Promise<void> {
    const leaseFile = join(this.leaseDir, ip);
    if ((await readFile(leaseFile, 'utf8').catch(() => undefined)) === owner) await rm(leaseFile, { force: true });
  }

  /** Leases a free address of the subnet for `owner`. */
  private async lease(owner: string): Promise<string> {
    await mkdir(this.leaseDir, { recursive: true });
    const [base] = this.bridge.subnet.split('/');
    const o = (base ?? '').split('.').map(Number);
    const hostCount = 2 ** (32 - this.prefixLength);
    const start = Math.floor(Math.random() * hostCount);
    const baseValue = (((o[0] ?? 0) << 24) | ((o[1] ?? 0) << 16) | ((o[2] ?? 0) << 8) | (o[3] ?? 0)) >>> 0;
    for (let i = 0; i < hostCount; i++) {
      const offset = (start + i) % hostCount;
      if (offset < 2 || offset === hostCount - 1) continue; // network, gateway, broadcast
      const value = (baseValue + offset) >>> 0;
      const ip = `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
      try {
        await writeFile(join(this.leaseDir, ip), owner, { flag: 'wx' });
        return ip;
      } catch {
        // Taken.
      }
    }
    throw new Error(`no free address in ${this.bridge.subnet}`);
  }

  /** Deletes a namespace (and with it the veth pair, and its user namespace) and frees its address. Idempotent. */
  async destroy(ns: Pick<SandboxNetns, 'name' | 'ip'>): Promise<void> {
    await runTool('ip', ['netns', 'delete', ns.name], { background: true }).catch(() => undefined);
    await removeKeptNamespace(join(USERNS_DIR, ns.name)).catch(() => undefined);
    if (ns.ip !== undefined) {
      const leaseFile = join(this.leaseDir, ns.ip);
      const owner = await readFile(leaseFile, 'utf8').catch(() => undefined);
      if (owner === ns.name) await rm(leaseFile, { force: true });
    }
  }

  /**
   * Removes this instance's namespaces (and their leases) that are not in `keep`: leftovers of a
   * previous process. Returns the names removed.
   */
  async removeOrphans(keep: Set<string>): Promise<string[]> {
    const removed: string[] = [];
    const pooled = new Set([...this.ready.online, ...this.ready.offline].map((n) => n.name));
    for (const name of await readdir(NETNS_DIR).catch(() => [] as string[])) {
      if (!name.startsWith(this.prefix) || keep.has(name) || pooled.has(name)) continue;
      await runTool('ip', ['netns', 'delete', name]).catch(() => undefined);
      removed.push(name);
    }
    for (const name of await readdir(USERNS_DIR).catch(() => [] as string[])) {
      if (name.startsWith(this.prefix) && !keep.has(name) && !pooled.has(name)) await removeKeptNamespace(join(USERNS_DIR, name)).catch(() => undefined);
    }
    for (const ip of await readdir(this.leaseDir).catch(() => [] as string[])) {
      const owner = await readFile(join(this.leaseDir, ip), 'utf8').catch(() => '');
      if (owner.startsWith(this.prefix) && !keep.has(owner) && !pooled.has(owner)) await rm(join(this.leaseDir, ip), { force: true });
    }
    return removed;
  }

  /** Stops refilling and deletes every ready namespace. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.filling.values()]);
    const all = [...this.ready.online, ...this.ready.offline];
    this.ready.online = [];
    this.ready.offline = [];
    await Promise.all(all.map((ns) => this.destroy(ns)));
  }
}

/** The CIDRs sandbox traffic may not be forwarded to: link-local, every other host subnet, extras. */
export function blockedCidrs(options: BridgeOptions): string[] {
  const cidrs = new Set<string>(['169.254.0.0/16', ...options.extraBlockedCidrs]);
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (name === options.bridgeName) continue;
    for (const address of addresses ?? []) {
      if (address.family !== 'IPv4' || address.internal || address.cidr === null) continue;
      cidrs.add(networkOf(address.cidr));
    }
  }
  return [...cidrs];
}

/**
 * Creates the bridge (with the gateway address) and installs the firewall, once per process and
 * bridge; the rules are flushed and refilled, so this is idempotent:
 * - `CORRAL-OCI-INPUT` (first in INPUT): from the bridge, only replies to connections the host
 *   opened; sandboxes cannot connect to any host address.
 * - `CORRAL-OCI-FORWARD` (first in FORWARD): from the bridge, drop traffic back to the bridge
 *   (sandbox to sandbox when routed), to link-local (cloud metadata), to the host's other subnets
 *   and to extra CIDRs; accept the rest out; towards the bridge, only replies.
 * - `CORRAL-OCI-NAT` (POSTROUTING): masquerade the subnet leaving through any other interface.
 * - With IPv6 in the kernel: IPv6 off on the bridge (no link-local address for sandboxes to reach)
 *   and the same two filter chains in ip6tables dropping every IPv6 packet from or to the bridge
 *   (sandboxes have no IPv6 but on `lo`; these rules hold should one get it anyway).
 * Also turns on `net.ipv4.ip_forward`.
 */
export function ensureBridge(options: BridgeOptions): Promise<void> {
  let job = bridgeSetups.get(options.bridgeName);
  if (!job) {
    job = setUpBridge(options).catch((error: unknown) => {
      bridgeSetups.delete(options.bridgeName);
      throw error;
    });
    bridgeSetups.set(options.bridgeName, job);
  }
  return job;
}

/** `addr_assign_type` of a device whose address was set explicitly (NET_ADDR_SET). */
const ADDRESS_SET = '3';

/** Whether `mac` (`aa:bb:…`) is a usable unicast address: not all zeros, not multicast. */
export function isUnicastMac(mac: string): boolean {
  const first = Number.parseInt(mac.slice(0, 2), 16);
  return /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac) && mac !== '00:00:00:00:00:00' && (first & 1) === 0;
}

/** A random locally administered unicast MAC address. */
function randomLocalMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = ((bytes[0] ?? 0) & 0xfc) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * Makes the bridge device `name` (or takes over one that exists) with the gateway address
 * `gatewayCidr` (`10.213.0.1/16`), and brings it up. Its MAC address is pinned: a Linux bridge
 * whose address was never set takes the lowest of its ports' addresses, so it changed whenever a
 * sandbox with the lowest one came or went, and every sandbox that had resolved the gateway sent
 * into the void (connections hung, DNS went unanswered) until its ARP entry aged out. Setting the
 * address it has pins it without changing it; a bridge left without ports has none (all zeros) and
 * gets a random one.
 */
export async function ensureBridgeDevice(name: string, gatewayCidr: string): Promise<void> {
  const links = await runTool('ip', ['-o', 'link', 'show', 'dev', name]).catch(() => undefined);
  if (!links) await runTool('ip', ['link', 'add', name, 'type', 'bridge']).catch(() => undefined);
  const sysfs = `/sys/class/net/${name}`;
  const current = (await readFile(`${sysfs}/address`, 'utf8')).trim();
  if ((await readFile(`${sysfs}/addr_assign_type`, 'utf8')).trim() !== ADDRESS_SET || !isUnicastMac(current)) {
    // A bridge whose last port left has 00:00:00:00:00:00, which the kernel would pin as it is.
    await runTool('ip', ['link', 'set', 'dev', name, 'address', isUnicastMac(current) ? current : randomLocalMac()]);
  }
  const addrs = await runTool('ip', ['-o', '-4', 'addr', 'show', 'dev', name]);
  if (!addrs.stdout.includes(`${gatewayCidr.split('/')[0]}/`)) await runTool('ip', ['addr', 'add', gatewayCidr, 'dev', name]);
  await runTool('ip', ['link', 'set', name, 'up']);
}

async function setUpBridge(options: BridgeOptions): Promise<void> {
  const br = options.bridgeName;
  const [base, bits] = options.subnet.split('/');
  const o = (base ?? '').split('.');
  const gateway = `${o[0]}.${o[1]}.${o[2]}.1`;
  await ensureBridgeDevice(br, `${gateway}/${bits}`);
  const forward = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
  if (forward.trim() !== '1') await writeFile('/proc/sys/net/ipv4/ip_forward', '1');

  // Both chains are replaced in one atomic commit: flushing and refilling them rule by rule left a
  // moment with no DROP, in which a sandbox could reach the host (seen when two processes on one
  // host installed the rules at once).
  await replaceChains('iptables', {
    [OCI_INPUT_CHAIN]: [
      ...redirectedDnsAccept(br),
      ['-i', br, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
      ['-i', br, '-j', 'DROP'],
    ],
    [OCI_FORWARD_CHAIN]: [
      ['-i', br, '-o', br, '-j', 'DROP'],
      ...blockedCidrs(options).map((cidr) => ['-i', br, '-d', cidr, '-j', 'DROP']),
      ['-i', br, '-j', 'ACCEPT'],
      ['-o', br, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
      ['-o', br, '-j', 'DROP'],
    ],
  });
  await ensureJump('filter', 'INPUT', OCI_INPUT_CHAIN);
  await ensureJump('filter', 'FORWARD', OCI_FORWARD_CHAIN);

  // Atomic too: between a flush and the append, a sandbox's first packet of a connection left
  // unmasqueraded, and the whole connection with it (its answers never came back).
  await replaceChains('iptables', { [OCI_NAT_CHAIN]: [['-s', options.subnet, '!', '-o', br, '-j', 'MASQUERADE']] }, 'nat');
  await ensureJump('nat', 'POSTROUTING', OCI_NAT_CHAIN);

  if (hostHasIpv6()) {
    await disableHostIpv6(br);
    const v6 = 'ip6tables';
    await replaceChains(v6, {
      [OCI_INPUT_CHAIN]: [['-i', br, '-j', 'DROP']],
      [OCI_FORWARD_CHAIN]: [
        ['-i', br, '-j', 'DROP'],
        ['-o', br, '-j', 'DROP'],
      ],
    });
    await ensureJump('filter', 'INPUT', OCI_INPUT_CHAIN, v6);
    await ensureJump('filter', 'FORWARD', OCI_FORWARD_CHAIN, v6);
  }
}



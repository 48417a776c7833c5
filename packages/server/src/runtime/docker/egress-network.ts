import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { isConflict } from './docker-exec.js';
import { LABEL_MANAGED } from './container-spec.js';

const run = promisify(execFile);

/** Settings for the network sandboxes with `networkAccess: true` join. */
export interface EgressNetworkOptions {
  /** Docker network name. */
  name: string;
  /** Linux bridge interface name (at most 15 characters). */
  bridgeName: string;
  /** Install the host firewall rules (needs root and `iptables` on the Docker host). */
  firewall: boolean;
  /** Destinations sandboxes may never reach, besides the host itself. */
  extraBlockedCidrs: string[];
  /**
   * Name of the chain jumped to from INPUT (default {@link INPUT_CHAIN}). Each engine whose
   * sandboxes share a host needs its own: the driver flushes and refills it for its bridge.
   */
  inputChain?: string;
  /** Name of the chain jumped to from DOCKER-USER (default {@link FORWARD_CHAIN}); one per engine, as above. */
  forwardChain?: string;
}

/** Whether the host kernel has IPv6 (without it there is nothing to turn off or filter). */
export function hostHasIpv6(): boolean {
  return existsSync('/proc/sys/net/ipv6');
}

/** Chain in the filter table's INPUT path: sandboxes cannot open connections to the host. */
export const INPUT_CHAIN = 'CORRAL-INPUT';
/** Chain jumped to from DOCKER-USER: destinations forwarded traffic from sandboxes may not reach. */
export const FORWARD_CHAIN = 'CORRAL-FORWARD';

/**
 * The bridge network for sandboxes with network access, and the host firewall around it:
 * - the network is created with inter-container communication disabled, so sandboxes on it
 *   cannot reach each other;
 * - `CORRAL-INPUT` (jumped to first from INPUT) drops every new connection from the bridge to the
 *   host itself, on any of its addresses (replies to connections the host opened still pass);
 * - `CORRAL-FORWARD` (jumped to first from DOCKER-USER) drops forwarded traffic from the bridge to
 *   link-local 169.254.0.0/16 (cloud metadata), to the subnets of the host's other interfaces, and
 *   to `extraBlockedCidrs`.
 * Everything else is routed and masqueraded by Docker as usual. The network has no IPv6
 * (`EnableIPv6: false`; containers also turn it off, see `buildCreateOptions`), and with IPv6 in
 * the host kernel the same two chains exist in ip6tables (jumped to from INPUT and FORWARD)
 * dropping every IPv6 packet from or to the bridge.
 */
export class EgressNetwork {
  private ready: Promise<void> | undefined;

  constructor(
    private readonly docker: Docker,
    readonly options: EgressNetworkOptions,
  ) {}

  /** Creates the network and installs the rules once per driver; later calls reuse the result. */
  ensure(): Promise<void> {
    this.ready ??= this.setUp().catch((error: unknown) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  private async setUp(): Promise<void> {
    await this.ensureNetwork();
    if (this.options.firewall) await this.installRules();
  }

  private async ensureNetwork(): Promise<void> {
    const existing = this.docker.getNetwork(this.options.name);
    try {
      await existing.inspect();
      return;
    } catch {
      // Missing: create it below.
    }
    try {
      await this.docker.createNetwork({
        Name: this.options.name,
        Driver: 'bridge',
        CheckDuplicate: true,
        EnableIPv6: false,
        Labels: { [LABEL_MANAGED]: 'true' },
        Options: {
          'com.docker.network.bridge.enable_icc': 'false',
          'com.docker.network.bridge.name': this.options.bridgeName,
          'com.docker.network.bridge.enable_ip_masquerade': 'true',
        },
      });
    } catch (error) {
      // Another driver instance created it at the same moment.
      if (!isConflict(error)) throw error;
    }
  }

  /** The CIDRs forwarded sandbox traffic is dropped to. */
  blockedCidrs(): string[] {
    const cidrs = new Set<string>(['169.254.0.0/16', ...this.options.extraBlockedCidrs]);
    for (const [name, addresses] of Object.entries(networkInterfaces())) {
      if (name === this.options.bridgeName) continue;
      for (const address of addresses ?? []) {
        if (address.family !== 'IPv4' || address.internal || address.cidr === null) continue;
        cidrs.add(networkOf(address.cidr));
      }
    }
    return [...cidrs];
  }

  /** Flushes and refills both chains, and makes sure they are jumped to first. Idempotent. */
  async installRules(): Promise<void> {
    const bridge = this.options.bridgeName;
    const inputChain = this.options.inputChain ?? INPUT_CHAIN;
    const forwardChain = this.options.forwardChain ?? FORWARD_CHAIN;
    await ensureChain(inputChain);
    await iptables(['-F', inputChain]);
    await iptables(['-A', inputChain, '-i', bridge, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
    await iptables(['-A', inputChain, '-i', bridge, '-j', 'DROP']);
    await ensureJump('INPUT', inputChain);

    await ensureChain(forwardChain);
    await iptables(['-F', forwardChain]);
    await iptables(['-A', forwardChain, '-i', bridge, '-o', bridge, '-j', 'DROP']);
    for (const cidr of this.blockedCidrs()) {
      await iptables(['-A', forwardChain, '-i', bridge, '-d', cidr, '-j', 'DROP']);
    }
    await iptables(['-A', forwardChain, '-j', 'RETURN']);
    await ensureChain('DOCKER-USER');
    await ensureJump('DOCKER-USER', forwardChain);

    if (!hostHasIpv6()) return;
    const v6 = 'ip6tables';
    await ensureChain(inputChain, v6);
    await iptables(['-F', inputChain], v6);
    await iptables(['-A', inputChain, '-i', bridge, '-j', 'DROP'], v6);
    await ensureJump('INPUT', inputChain, v6);
    await ensureChain(forwardChain, v6);
    await iptables(['-F', forwardChain], v6);
    await iptables(['-A', forwardChain, '-i', bridge, '-j', 'DROP'], v6);
    await iptables(['-A', forwardChain, '-o', bridge, '-j', 'DROP'], v6);
    await ensureJump('FORWARD', forwardChain, v6);
  }
}

/** `iptables` or `ip6tables`. */
type Firewall = 'iptables' | 'ip6tables';

async function iptables(args: string[], binary: Firewall = 'iptables'): Promise<void> {
  try {
    await run(binary, ['-w', '5', ...args]);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`${binary} ${args.join(' ')} failed: ${stderr.trim() || String(error)}`, { cause: error });
  }
}

async function ensureChain(chain: string, binary: Firewall = 'iptables'): Promise<void> {
  try {
    await run(binary, ['-w', '5', '-n', '-L', chain]);
  } catch {
    await iptables(['-N', chain], binary).catch(async (error: unknown) => {
      // Created concurrently by another instance.
      await run(binary, ['-w', '5', '-n', '-L', chain]).catch(() => {
        throw error;
      });
    });
  }
}

async function ensureJump(from: string, to: string, binary: Firewall = 'iptables'): Promise<void> {
  try {
    await run(binary, ['-w', '5', '-C', from, '-j', to]);
  } catch {
    await iptables(['-I', from, '1', '-j', to], binary);
  }
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

import { networkInterfaces } from 'node:os';
import type Docker from 'dockerode';
import { isConflict } from './docker-exec.js';
import { LABEL_MANAGED } from './container-spec.js';
import { ensureJump, hostHasIpv6, networkOf, redirectedDnsAccept, replaceChains } from '../host-firewall.js';
import { runTool } from '../run-tool.js';

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

  /**
   * Replaces both chains in one atomic commit each (no moment without their DROP rules, even with
   * several processes installing them at once) and makes sure they are jumped to. Idempotent.
   */
  async installRules(): Promise<void> {
    const bridge = this.options.bridgeName;
    const inputChain = this.options.inputChain ?? INPUT_CHAIN;
    const forwardChain = this.options.forwardChain ?? FORWARD_CHAIN;
    await replaceChains('iptables', {
      [inputChain]: [
        ...redirectedDnsAccept(bridge),
        ['-i', bridge, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
        ['-i', bridge, '-j', 'DROP'],
      ],
      [forwardChain]: [
        ['-i', bridge, '-o', bridge, '-j', 'DROP'],
        ...this.blockedCidrs().map((cidr) => ['-i', bridge, '-d', cidr, '-j', 'DROP']),
        ['-j', 'RETURN'],
      ],
    });
    await ensureJump('filter', 'INPUT', inputChain);
    // Docker creates DOCKER-USER; a fresh engine may not have yet.
    await runTool('iptables', ['-w', '5', '-n', '-L', 'DOCKER-USER']).catch(() => runTool('iptables', ['-w', '5', '-N', 'DOCKER-USER']).catch(() => undefined));
    await ensureJump('filter', 'DOCKER-USER', forwardChain);

    if (!hostHasIpv6()) return;
    await replaceChains('ip6tables', {
      [inputChain]: [['-i', bridge, '-j', 'DROP']],
      [forwardChain]: [
        ['-i', bridge, '-j', 'DROP'],
        ['-o', bridge, '-j', 'DROP'],
      ],
    });
    await ensureJump('filter', 'INPUT', inputChain, 'ip6tables');
    await ensureJump('filter', 'FORWARD', forwardChain, 'ip6tables');
  }

}






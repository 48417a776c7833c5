import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type Docker from 'dockerode';
import { dialViaExec } from '../exec-relay.js';
import type { SandboxRuntime } from '../runtime.js';

/** How long a container's bridge address (or that it has none) is remembered. */
const ADDRESS_TTL_MS = 30_000;

/** At most this many addresses are remembered; past it the memory starts over. */
const MAX_REMEMBERED = 10_000;

function connectTcp(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * The docker driver's `dial`: a direct TCP connection to the container's bridge address when it
 * has one, otherwise (no network) a relay process exec'd inside the sandbox. Addresses are
 * cached briefly per driver instance.
 */
export class DockerDialer {
  private readonly addresses = new Map<string, { ip: string | null; until: number }>();

  constructor(
    private readonly docker: Docker,
    private readonly runtime: Pick<SandboxRuntime, 'exec'>,
  ) {}

  /** Opens a byte stream to `port` inside the sandbox. */
  async dial(runtimeId: string, port: number): Promise<Duplex> {
    const ip = await this.containerAddress(runtimeId);
    if (ip) return connectTcp(ip, port);
    return dialViaExec(this.runtime, runtimeId, port);
  }

  /** The sandbox container's bridge address, when it has a network. */
  private async containerAddress(runtimeId: string): Promise<string | null> {
    const cached = this.addresses.get(runtimeId);
    if (cached && cached.until > Date.now()) return cached.ip;
    let ip: string | null = null;
    try {
      const info = await this.docker.getContainer(runtimeId).inspect();
      ip = Object.values(info.NetworkSettings?.Networks ?? {}).map((n) => n.IPAddress).find((a) => a !== undefined && a !== '') ?? null;
    } catch {
      ip = null;
    }
    if (this.addresses.size > MAX_REMEMBERED) this.addresses.clear();
    this.addresses.set(runtimeId, { ip, until: Date.now() + ADDRESS_TTL_MS });
    return ip;
  }
}

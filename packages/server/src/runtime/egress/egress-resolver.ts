import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, Packet } from 'dns-packet';

/** DNS response codes the resolver answers with itself. */
const RCODE = { SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

/** How long one upstream question may take. */
const UPSTREAM_TIMEOUT_MS = 2000;
/** How long an idle TCP connection from a sandbox stays open. */
const TCP_IDLE_MS = 10_000;
/** Largest DNS message over TCP the resolver reads. */
const MAX_TCP_MESSAGE = 65_535;
/** Questions one sandbox may have in flight upstream at once; more are REFUSED (a flood costs sockets). */
const MAX_IN_FLIGHT_PER_SOURCE = 64;
/** Open TCP connections one sandbox may hold to the resolver. */
const MAX_TCP_PER_SOURCE = 16;

/** Addresses an allowed answer held, with their TTL in seconds. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
  ttl: number;
}

/** What the resolver knows about one sandbox (looked up by the query's source address). */
export interface ResolverClient {
  /** Whether the sandbox may resolve `name`. */
  allowsName(name: string): boolean;
  /**
   * Called with the addresses of an allowed answer (the whole CNAME chain followed) before the
   * answer is sent; the firewall opens them here.
   */
  onAllowed(name: string, addresses: ResolvedAddress[]): Promise<void>;
  /**
   * Whether a denied name is still resolved upstream (after the sandbox got NXDOMAIN) so that
   * {@link onDenied} can close its addresses: true only for deny lists, where the sandbox reaches
   * everything else anyway. Under an allow list a denied name never leaves the host (it would be
   * a channel to any domain's nameservers).
   */
  resolvesDenied(): boolean;
  /** Called with the addresses a denied name resolves to (the deny-list firewall closes them, best effort). */
  onDenied(name: string, addresses: ResolvedAddress[]): Promise<void>;
  /** Records one question and what became of it. */
  record(entry: { name: string; type: string; verdict: 'allowed' | 'denied'; answers: string[] }): void;
}

/** Settings of an {@link EgressResolver}. */
export interface EgressResolverOptions {
  /** Address to listen on (the sandboxes' gateway); the port is chosen by the kernel, the same for UDP and TCP. */
  listenAddress: string;
  /** The upstream DNS server (`address` or `address:port`), asked at every question. */
  upstream: () => Promise<string>;
  /** The sandbox a source address belongs to, or undefined (then the question is REFUSED). */
  clientOf(source: string): ResolverClient | undefined;
}

/**
 * A DNS server (UDP and TCP) for sandboxes under an egress policy. It knows a sandbox by the
 * source address of its question. A name the sandbox's policy allows is forwarded to the upstream
 * as asked; the addresses of its answer are handed to `onAllowed` (the firewall opens them)
 * before the answer goes back. A name it does not allow gets NXDOMAIN. Unknown sources get
 * REFUSED. The firewall redirects the sandboxes' port 53 here (see egress-firewall.ts).
 */
export class EgressResolver {
  private udp: UdpSocket | undefined;
  private tcp: Server | undefined;
  private readonly connections = new Set<Socket>();
  /** Per source address: questions in flight upstream, and open TCP connections. */
  private readonly inFlight = new Map<string, number>();
  private readonly tcpOpen = new Map<string, number>();
  /** The port the resolver listens on (UDP and TCP), once started. */
  port = 0;

  constructor(private readonly options: EgressResolverOptions) {}

  /** Binds UDP on a free port and TCP on the same port (retrying on a clash). */
  async start(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const udp = createSocket('udp4');
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(0, this.options.listenAddress, () => resolve());
      });
      const port = udp.address().port;
      const tcp = createServer((socket) => this.serveTcp(socket));
      const ok = await new Promise<boolean>((resolve, reject) => {
        tcp.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' && attempt < 10 ? resolve(false) : reject(error)));
        tcp.listen(port, this.options.listenAddress, () => resolve(true));
      });
      if (!ok) {
        udp.close();
        continue;
      }
      udp.on('error', () => undefined);
      udp.on('message', (message, remote) => {
        void this.answer(message, remote.address, 'udp').then((reply) => {
          if (reply) udp.send(reply, remote.port, remote.address);
        });
      });
      this.udp = udp;
      this.tcp = tcp;
      this.port = port;
      return;
    }
  }

  /** Stops listening and closes open connections. */
  async close(): Promise<void> {
    for (const socket of this.connections) socket.destroy();
    await Promise.all([
      new Promise<void>((resolve) => (this.udp ? this.udp.close(() => resolve()) : resolve())),
      new Promise<void>((resolve) => (this.tcp ? this.tcp.close(() => resolve()) : resolve())),
    ]);
    this.udp = undefined;
    this.tcp = undefined;
  }

  /** Reads length-prefixed messages from a TCP connection and answers each. */
  private serveTcp(socket: Socket): void {
    const source = socket.remoteAddress?.replace(/^::ffff:/, '') ?? '';
    const open = this.tcpOpen.get(source) ?? 0;
    if (open >= MAX_TCP_PER_SOURCE) {
      socket.destroy();
      return;
    }
    this.tcpOpen.set(source, open + 1);
    this.connections.add(socket);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.connections.delete(socket);
      const left = (this.tcpOpen.get(source) ?? 1) - 1;
      if (left > 0) this.tcpOpen.set(source, left);
      else this.tcpOpen.delete(source);
    });
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 2) {
        const length = buffer.readUInt16BE(0);
        if (buffer.length < 2 + length) break;
        const message = buffer.subarray(2, 2 + length);
        buffer = buffer.subarray(2 + length);
        void this.answer(message, source, 'tcp').then((reply) => {
          if (!reply || socket.destroyed) return;
          const prefix = Buffer.alloc(2);
          prefix.writeUInt16BE(reply.length);
          socket.write(Buffer.concat([prefix, reply]));
        });
      }
      if (buffer.length > MAX_TCP_MESSAGE + 2) socket.destroy();
    });
  }

  /** The reply to one query message, or undefined when it is not a query worth answering. */
  private async answer(message: Buffer, source: string, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return undefined;
    }
    if (query.type !== 'query') return undefined;
    const question = query.questions?.[0];
    if (!question) return reply(query, RCODE.REFUSED);
    const client = this.options.clientOf(source);
    if (!client) return reply(query, RCODE.REFUSED);
    const name = question.name.toLowerCase().replace(/\.$/, '');
    if (!client.allowsName(name)) {
      client.record({ name, type: question.type, verdict: 'denied', answers: [] });
      if (client.resolvesDenied()) void this.learnDenied(client, name, message, transport);
      return reply(query, RCODE.NXDOMAIN);
    }
    const flying = this.inFlight.get(source) ?? 0;
    if (flying >= MAX_IN_FLIGHT_PER_SOURCE) return reply(query, RCODE.REFUSED);
    this.inFlight.set(source, flying + 1);
    let upstream: Buffer;
    try {
      upstream = await this.forward(message, transport);
    } catch {
      client.record({ name, type: question.type, verdict: 'allowed', answers: [] });
      return reply(query, RCODE.SERVFAIL);
    } finally {
      const left = (this.inFlight.get(source) ?? 1) - 1;
      if (left > 0) this.inFlight.set(source, left);
      else this.inFlight.delete(source);
    }
    let decoded: DecodedPacket;
    try {
      decoded = dnsPacket.decode(upstream);
    } catch {
      return reply(query, RCODE.SERVFAIL);
    }
    if (decoded.id !== query.id) return reply(query, RCODE.SERVFAIL);
    const addresses = chainAddresses(name, decoded.answers ?? []);
    client.record({ name, type: question.type, verdict: 'allowed', answers: addresses.map((a) => a.address) });
    try {
      if (addresses.length > 0) await client.onAllowed(name, addresses);
    } catch {
      return reply(query, RCODE.SERVFAIL);
    }
    return upstream;
  }

  /** Resolves a denied name upstream anyway, so a deny-list firewall can close what it points at. */
  private async learnDenied(client: ResolverClient, name: string, message: Buffer, transport: 'udp' | 'tcp'): Promise<void> {
    try {
      const decoded = dnsPacket.decode(await this.forward(message, transport));
      const addresses = chainAddresses(name, decoded.answers ?? []);
      if (addresses.length > 0) await client.onDenied(name, addresses);
    } catch {
      // Best effort.
    }
  }

  /** Sends a query to the upstream over the transport the sandbox used, and returns the answer. */
  private async forward(message: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer> {
    const target = await this.options.upstream();
    const [host, portText] = target.includes(':') && !target.includes('::') ? target.split(':') : [target, '53'];
    const port = Number(portText ?? '53');
    return transport === 'udp' ? forwardUdp(message, host ?? target, port) : forwardTcp(message, host ?? target, port);
  }
}

/** Answers `query` with an empty response carrying `rcode`. */
function reply(query: DecodedPacket, rcode: number): Buffer {
  const packet: Packet = {
    type: 'response',
    id: query.id ?? 0,
    flags: (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0) | dnsPacket.RECURSION_AVAILABLE | rcode,
    questions: query.questions ?? [],
  };
  return dnsPacket.encode(packet);
}

/**
 * The A and AAAA records of an answer that belong to `name`: its own, and those of every name a
 * CNAME chain from it leads to (records of other names in the message are ignored).
 */
export function chainAddresses(name: string, answers: Answer[]): ResolvedAddress[] {
  const chain = new Set([name.toLowerCase().replace(/\.$/, '')]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const answer of answers) {
      if (answer.type !== 'CNAME' || !chain.has(answer.name.toLowerCase())) continue;
      const target = answer.data.toLowerCase().replace(/\.$/, '');
      if (!chain.has(target)) {
        chain.add(target);
        grew = true;
      }
    }
  }
  const out: ResolvedAddress[] = [];
  for (const answer of answers) {
    if ((answer.type === 'A' || answer.type === 'AAAA') && chain.has(answer.name.toLowerCase())) {
      out.push({ address: answer.data, family: answer.type === 'A' ? 4 : 6, ttl: answer.ttl ?? 0 });
    }
  }
  return out;
}

function forwardUdp(message: Buffer, host: string, port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error('upstream timeout'));
    }, UPSTREAM_TIMEOUT_MS);
    socket.once('error', (error) => {
      clearTimeout(timer);
      socket.close();
      reject(error);
    });
    // Connected: only the upstream's own datagrams arrive on this socket.
    socket.connect(port, host, () => socket.send(message));
    socket.once('message', (answer) => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    });
  });
}

function forwardTcp(message: Buffer, host: string, port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('upstream timeout'));
    }, UPSTREAM_TIMEOUT_MS);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('connect', () => {
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16BE(message.length);
      socket.write(Buffer.concat([prefix, message]));
    });
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length >= 2 && buffer.length >= 2 + buffer.readUInt16BE(0)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(buffer.subarray(2, 2 + buffer.readUInt16BE(0)));
      }
    });
  });
}

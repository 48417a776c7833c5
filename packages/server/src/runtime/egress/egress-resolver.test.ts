import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import type { DecodedPacket } from 'dns-packet';
import { CompiledEgressPolicy } from './egress-policy.js';
import { chainAddresses, EgressResolver } from './egress-resolver.js';
import type { ResolvedAddress, ResolverClient } from './egress-resolver.js';
import { EgressLogRing, egressLogPrefix, parseEgressLogPrefix } from './egress-log.js';

/** A tiny upstream: `alias.example.test` is a CNAME to `cdn.other.test`; every other name has one A record. */
function upstreamAnswer(query: DecodedPacket): Buffer {
  const q = query.questions?.[0];
  const name = q?.name ?? '';
  const answers: dnsPacket.Answer[] =
    name === 'alias.example.test'
      ? [
          { type: 'CNAME', name, ttl: 30, data: 'cdn.other.test' },
          { type: 'A', name: 'cdn.other.test', ttl: 30, data: '198.51.100.4' },
          { type: 'A', name: 'unrelated.test', ttl: 30, data: '198.51.100.99' },
        ]
      : [{ type: 'A', name, ttl: 7, data: '198.51.100.2' }];
  return dnsPacket.encode({ type: 'response', id: query.id ?? 0, flags: dnsPacket.RECURSION_AVAILABLE, questions: query.questions ?? [], answers });
}

function query(name: string, id = 7): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
}

function askUdp(port: number, message: Buffer): Promise<DecodedPacket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => reject(new Error('no answer')), 2000);
    socket.once('message', (answer) => {
      clearTimeout(timer);
      socket.close();
      resolve(dnsPacket.decode(answer));
    });
    socket.send(message, port, '127.0.0.1');
  });
}

function askTcp(port: number, message: Buffer): Promise<DecodedPacket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(dnsPacket.streamEncode(dnsPacket.decode(message))));
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length >= 2 && buffer.length >= 2 + buffer.readUInt16BE(0)) {
        socket.destroy();
        resolve(dnsPacket.streamDecode(buffer) as DecodedPacket);
      }
    });
    socket.once('error', reject);
  });
}

const rcodeOf = (packet: DecodedPacket): string => (packet as DecodedPacket & { rcode?: string }).rcode ?? '';

describe('egress resolver', () => {
  const upstream = createSocket('udp4');
  /** The upstream over TCP, on the same port: the resolver forwards a TCP question over TCP. */
  const upstreamTcp = createServer((socket) => {
    let buffer = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length >= 2 && buffer.length >= 2 + buffer.readUInt16BE(0)) {
        const answer = upstreamAnswer(dnsPacket.decode(buffer.subarray(2, 2 + buffer.readUInt16BE(0))));
        const prefix = Buffer.alloc(2);
        prefix.writeUInt16BE(answer.length);
        socket.end(Buffer.concat([prefix, answer]));
      }
    });
  });
  let resolver: EgressResolver;
  let known = true;
  const opened: Array<{ name: string; addresses: ResolvedAddress[] }> = [];
  const log = new EgressLogRing(10);
  /** Names the upstream was asked, in order. */
  const upstreamQuestions: string[] = [];
  const policy = new CompiledEgressPolicy({ allowlist: ['*.example.test'], denylist: null });

  before(async () => {
    upstream.on('message', (message, remote) => {
      const decoded = dnsPacket.decode(message);
      upstreamQuestions.push(decoded.questions?.[0]?.name ?? '');
      upstream.send(upstreamAnswer(decoded), remote.port, remote.address);
    });
    await new Promise<void>((resolve) => upstream.bind(0, '127.0.0.1', () => resolve()));
    await new Promise<void>((resolve) => upstreamTcp.listen(upstream.address().port, '127.0.0.1', resolve));
    const client: ResolverClient = {
      allowsName: (name) => policy.allowsName(name),
      onAllowed: async (name, addresses) => {
        await new Promise((r) => setTimeout(r, 50));
        opened.push({ name, addresses });
      },
      resolvesDenied: () => false,
      onDenied: async () => undefined,
      record: (entry) => log.push({ at: new Date().toISOString(), kind: 'dns', destination: entry.name, port: 53, protocol: 'dns', verdict: entry.verdict, answers: entry.answers }),
    };
    resolver = new EgressResolver({
      listenAddress: '127.0.0.1',
      upstream: async () => `127.0.0.1:${upstream.address().port}`,
      clientOf: (source) => (known && source === '127.0.0.1' ? client : undefined),
    });
    await resolver.start();
  });

  after(async () => {
    await resolver.close();
    upstream.close();
    await new Promise((resolve) => upstreamTcp.close(resolve));
  });

  it('forwards an allowed name and opens its addresses before answering (UDP)', async () => {
    const before = opened.length;
    const answer = await askUdp(resolver.port, query('api.example.test'));
    assert.equal(opened.length, before + 1, 'the addresses were opened before the answer arrived');
    assert.equal(answer.id, 7);
    assert.deepEqual(answer.answers?.flatMap((a) => (a.type === 'A' ? [a.data] : [])), ['198.51.100.2']);
    assert.deepEqual(opened.at(-1), { name: 'api.example.test', addresses: [{ address: '198.51.100.2', family: 4, ttl: 7 }] });
  });

  it('answers NXDOMAIN for a name the policy does not allow, never asks the upstream for it, and logs both verdicts', async () => {
    const asked = upstreamQuestions.length;
    const answer = await askUdp(resolver.port, query('cdn.other.test', 9));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(upstreamQuestions.length, asked, 'a denied name under an allow list does not leave the host');
    assert.equal(answer.id, 9);
    assert.equal(rcodeOf(answer), 'NXDOMAIN');
    assert.equal(answer.answers?.length, 0);
    const entries = log.recent(10);
    assert.deepEqual(entries.map((e) => [e.destination, e.verdict]).slice(-2), [['api.example.test', 'allowed'], ['cdn.other.test', 'denied']]);
  });

  it('serves TCP, and follows a CNAME chain out of the allowed domain (records of other names are ignored)', async () => {
    const answer = await askTcp(resolver.port, query('alias.example.test', 11));
    assert.equal(answer.id, 11);
    assert.equal(rcodeOf(answer), 'NOERROR');
    assert.deepEqual(opened.at(-1), { name: 'alias.example.test', addresses: [{ address: '198.51.100.4', family: 4, ttl: 30 }] });
  });

  it('refuses a source it does not know', async () => {
    known = false;
    try {
      assert.equal(rcodeOf(await askUdp(resolver.port, query('api.example.test'))), 'REFUSED');
    } finally {
      known = true;
    }
  });
});

describe('egress helpers', () => {
  it('chainAddresses follows CNAMEs from the asked name only', () => {
    const answers: dnsPacket.Answer[] = [
      { type: 'CNAME', name: 'a.test', data: 'b.test', ttl: 1 },
      { type: 'CNAME', name: 'b.test', data: 'c.test', ttl: 1 },
      { type: 'A', name: 'c.test', data: '192.0.2.1', ttl: 5 },
      { type: 'AAAA', name: 'c.test', data: '2001:db8::1', ttl: 6 },
      { type: 'A', name: 'x.test', data: '192.0.2.9', ttl: 5 },
    ];
    assert.deepEqual(chainAddresses('A.test.', answers), [
      { address: '192.0.2.1', family: 4, ttl: 5 },
      { address: '2001:db8::1', family: 6, ttl: 6 },
    ]);
  });

  it('the log ring keeps the newest entries, oldest first', () => {
    const ring = new EgressLogRing(3);
    for (let i = 0; i < 5; i++) ring.push({ at: String(i), kind: 'dns', destination: `n${i}`, port: 53, protocol: 'dns', verdict: 'allowed' });
    assert.deepEqual(ring.recent(10).map((e) => e.destination), ['n2', 'n3', 'n4']);
    assert.deepEqual(ring.recent(2).map((e) => e.destination), ['n3', 'n4']);
    assert.deepEqual(ring.recent(0), []);
  });

  it('log prefixes round-trip and fit netfilter', () => {
    const prefix = egressLogPrefix('0123456789ab', 'denied');
    assert.ok(prefix.length < 64);
    assert.deepEqual(parseEgressLogPrefix(prefix), { tag: '0123456789ab', verdict: 'denied' });
    assert.equal(parseEgressLogPrefix('other 0123456789ab denied'), undefined);
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { WebSocket } from 'ws';
import type { CorralConfig } from '../config.js';
import { buildImage } from '../images/image-catalog.js';
import { createRuntimeImages } from '../runtime/create-runtime.js';
import { ociMissing } from '../testing/runtime-available.js';
import { encode } from './connect/connect-test-client.js';
import { SendInputRequestSchema } from './connect/gen/command_session_pb.js';
import { type GatewaySandbox, type GatewayTestServer, TEST_IMAGE, createSandbox, execCall, startGatewayServer } from './test-support.js';

const missing = ociMissing();
const skip = missing !== undefined && process.env.CI !== 'true' ? missing : undefined;
const MiB = 1024 * 1024;

/** A listening server on the oci driver (the default) with the offline test image in its store. */
async function startOciServer(overrides: Partial<CorralConfig>): Promise<GatewayTestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-fair-'));
  await buildImage('busybox', TEST_IMAGE, await createRuntimeImages({ runtime: 'oci', dataDir }));
  const server = await startGatewayServer({ runtime: 'oci', dataDir, ...overrides });
  return {
    ...server,
    async close() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Peak resident set size of this process so far, bytes. */
const peakRss = (): number => process.resourceUsage().maxRSS * 1024;

/** Opens a raw HTTP/1.1 connection to the test server. */
function rawSocket(server: GatewayTestServer): Promise<Socket> {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: hostname, port: Number(port) }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Resolves with the socket's close, or 'open' if it is still open after `ms`. */
function closedWithin(socket: Socket, ms: number): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve('closed');
    const timer = setTimeout(() => resolve('open'), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
}

describe('gateway fairness and bounds (oci)', { timeout: 240_000, skip }, () => {
  let server: GatewayTestServer;
  /** Tenant A: the admin. */
  let a: GatewaySandbox;
  /** Tenant B: another user. */
  let b: GatewaySandbox;

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    server = await startOciServer({
      maxConcurrentExecs: 4,
      maxExecsPerUser: 4,
      maxExecsPerSandbox: 4,
      execOutputMaxBytes: MiB,
      execOutputBudgetBytes: MiB,
      transferIdleTimeoutSeconds: 1,
    });
    const userB = await server.t.createUser('tenant-b');
    [a, b] = await Promise.all([createSandbox(server), createSandbox(server, {}, userB.key)]);
  });
  after(async () => server?.close());

  it("serves tenant B's exec at once while tenant A has 1000 execs queued", async () => {
    const flood = new AbortController();
    const floods = Array.from({ length: 1004 }, () =>
      fetch(`${a.base}/exec`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ command: 'sleep 5', timeout: 60 }),
        signal: flood.signal,
      }).then(
        (r) => r.status,
        () => 0,
      ),
    );
    try {
      // Let A's requests reach the server and fill the queue.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const started = Date.now();
      const r = await Promise.race([execCall(b, { command: 'echo b' }), new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 15_000))]);
      const ms = Date.now() - started;
      assert.ok(r, 'B was not served within 15 s');
      assert.equal(r.status, 200);
      assert.equal(r.body.stdout, 'b\n');
      // A FIFO queue would make B wait behind 1000 five-second execs on 4 slots (over 20 minutes);
      // fair queueing serves it as soon as one of A's execs ends (~5 s).
      assert.ok(ms < 9000, `B waited ${ms} ms`);
    } finally {
      flood.abort();
      await Promise.all(floods);
    }
    const ps = await execCall(a, { command: 'sleep 1; ps -o args | grep -c "^sleep 5" || true', timeout: 30 });
    assert.equal(ps.body.stdout.trim(), '0', "A's aborted execs were killed");
  });

  it('bounds exec output held across in-flight calls, not only per call', async () => {
    // Two execs at once, each keeping 768 KiB, against a 1 MiB budget for the whole server.
    const command = `head -c ${768 * 1024} /dev/zero | tr '\\0' a; sleep 2`;
    const [first, second] = await Promise.all([execCall(a, { command }), execCall(b, { command })]);
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    const kept = [first.body.stdout, second.body.stdout].map((s) => s.replace(/\n\[corral:[^\]]*\]\n$/, '').length);
    assert.ok((kept[0] ?? 0) + (kept[1] ?? 0) <= MiB, `kept ${kept.join(' + ')} bytes`);
    assert.ok(
      [first.body.stdout, second.body.stdout].some((s) => s.includes('CORRAL_EXEC_OUTPUT_BUDGET_BYTES')),
      'one answer says the server-wide budget truncated it',
    );
  });

  it('answers a Connect gzip bomb with a 4xx without expanding it in memory', async () => {
    // 64 gzip members of 16 MiB of zeros each: 1 GiB once expanded, ~1 MiB on the wire.
    const member = gzipSync(encode(SendInputRequestSchema, { session: { selector: { case: 'pid', value: 1 } }, input: { input: { case: 'stdin', value: Buffer.alloc(16 * MiB) } } }), { level: 9 });
    const bomb = Buffer.concat(Array.from({ length: 64 }, () => member));
    assert.ok(bomb.length < 4 * MiB);
    const before = Math.max(peakRss(), process.memoryUsage().rss);
    const res = await fetch(`${a.base}/command_session.CommandSession/SendInput`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/proto', 'content-encoding': 'gzip', 'connect-protocol-version': '1' },
      body: bomb,
    });
    const body = (await res.json()) as { code: string; message: string };
    const growth = peakRss() - before;
    assert.ok(growth < 256 * MiB, `peak RSS grew ${(growth / MiB).toFixed(0)} MiB`);
    assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`);
    assert.equal(body.code, 'resource_exhausted');
  });

  it('cuts a stalled upload after the idle timeout with 408', async () => {
    const socket = await rawSocket(server);
    const url = new URL(`${a.base}/upload?path=/tmp/stalled&sandbox_id=${a.id}`);
    const boundary = 'stalledboundary';
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\nContent-Type: application/octet-stream\r\n\r\n`;
    socket.write(
      `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${a.token}\r\n` +
        `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${10 * MiB}\r\n\r\n${head}`,
    );
    socket.write(Buffer.alloc(64 * 1024, 1));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    const started = Date.now();
    const state = await closedWithin(socket, 8000);
    socket.destroy();
    assert.equal(state, 'closed', 'the server closed the stalled upload');
    assert.ok(Date.now() - started < 6000);
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.match(answer, /"error":"idle_timeout"/);
  });

  it('cuts a download whose client stops reading after the idle timeout', async () => {
    const size = 64 * MiB;
    const made = await execCall(a, { command: `head -c ${size} /dev/zero > /tmp/big && echo ok` });
    assert.equal(made.body.stdout, 'ok\n');
    const socket = await rawSocket(server);
    const url = new URL(`${a.base}/download?path=/tmp/big&sandbox_id=${a.id}`);
    socket.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${a.token}\r\n\r\n`);
    let received = 0;
    let closed = false;
    let first: () => void = () => undefined;
    const gotFirst = new Promise<void>((resolve) => (first = resolve));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received === chunk.length) {
        socket.pause(); // stop reading after the first bytes
        first();
      }
    });
    socket.once('close', () => (closed = true));
    // Bounded, so a download that never starts fails here with what is known, not as a suite timeout.
    let noData: NodeJS.Timeout | undefined;
    await Promise.race([
      gotFirst,
      new Promise<never>((_, reject) => {
        noData = setTimeout(() => reject(new Error(`no byte of the download within 60 s (socket ${closed ? 'closed' : 'open'})`)), 60_000);
      }),
    ]).finally(() => clearTimeout(noData));
    await new Promise((resolve) => setTimeout(resolve, 4000));
    socket.resume();
    await closedWithin(socket, 5000);
    socket.destroy();
    assert.ok(closed, 'the server closed the connection');
    assert.ok(received < size, `received ${received} of ${size} bytes: the download was not cut`);
  });

  it('holds back a client streaming 200 MB into a process that does not read its stdin', async () => {
    const ws = new WebSocket(`${a.base.replace(/^http/, 'ws')}/stream`, { headers: { authorization: `Bearer ${a.token}` } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const started = new Promise<void>((resolve) =>
      ws.on('message', (data: Buffer, isBinary) => {
        if (!isBinary && (JSON.parse(data.toString('utf8')) as { type: string }).type === 'started') resolve();
      }),
    );
    ws.send(JSON.stringify({ type: 'start', command: 'sleep 600', stdin: true }));
    await started;
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const chunk = Buffer.alloc(MiB, 7);
    let sent = 0;
    const deadline = Date.now() + 6000;
    try {
      // Each send waits until ws has handed the previous one to the kernel, as a careful client does.
      while (sent < 200 * MiB && Date.now() < deadline) {
        const accepted = await Promise.race([
          new Promise<boolean>((resolve) => ws.send(chunk, { binary: true }, (error) => resolve(error === undefined || error === null))),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), Math.max(1, deadline - Date.now()))),
        ]);
        if (!accepted) break;
        sent += chunk.length;
      }
    } finally {
      clearInterval(sampler);
      ws.terminate();
    }
    assert.ok(sent < 64 * MiB, `the server took ${sent / MiB} MiB into a process that reads nothing`);
    assert.ok(peak - before < 128 * MiB, `RSS grew ${((peak - before) / MiB).toFixed(0)} MiB`);
  });
});

describe('gateway rate limit (oci)', { timeout: 120_000, skip }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    server = await startOciServer({ rateLimits: true, gatewayRateLimit: 1, gatewayRateBurst: 3 });
    sb = await createSandbox(server);
  });
  after(async () => server?.close());

  it('answers 429 with Retry-After once a user is over its gateway rate', async () => {
    const statuses: number[] = [];
    let limited: Response | undefined;
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${sb.base}/exec`, {
        method: 'POST',
        headers: { authorization: `Bearer ${sb.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ command: 'true', timeout: 10 }),
      });
      statuses.push(res.status);
      if (res.status === 429) limited ??= res;
      else await res.text();
    }
    assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
    assert.ok(limited, `statuses ${statuses.join(',')}`);
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    const body = (await limited.json()) as { error: string; message: string; code: number; retry_after: number };
    assert.equal(body.error, 'rate_limited');
    assert.equal(body.code, 429);
    assert.match(body.message, /^Too Many Requests/);
    assert.ok(body.retry_after >= 1);
    // WebSocket sessions count too: the upgrade is refused with a plain 429.
    const socket = await rawSocket(server);
    const url = new URL(`${sb.base}/stream`);
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.write(
      `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${sb.token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    );
    await closedWithin(socket, 5000);
    socket.destroy();
    assert.match(answer, /^HTTP\/1\.1 429 Too Many Requests\r\n/);
    assert.match(answer, /\r\nRetry-After: \d+\r\n/);
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as netConnect } from 'node:net';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { buildImage } from '../images/image-catalog.js';
import { createRuntimeImages } from '../runtime/create-runtime.js';
import { ociMissing } from '../testing/runtime-available.js';
import { type GatewaySandbox, type GatewayTestServer, TEST_IMAGE, createSandbox, execCall, startGatewayServer } from './test-support.js';

const missing = ociMissing();
const skip = missing !== undefined && process.env.CI !== 'true' ? missing : undefined;

/** Opens a streaming-exec session running `argv`; resolves once the process has started. */
async function openSession(sb: GatewaySandbox, token: string, argv: string[]): Promise<{ ws: WebSocket; closed: Promise<{ code: number; at: number }> }> {
  const ws = new WebSocket(`${sb.base.replace(/^http/, 'ws')}/stream`, { headers: { authorization: `Bearer ${token}` } });
  const closed = new Promise<{ code: number; at: number }>((resolve) => ws.once('close', (code) => resolve({ code, at: Date.now() })));
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    ws.once('open', () => ws.send(JSON.stringify({ type: 'start', argv })));
    ws.on('message', (data, isBinary) => {
      if (!isBinary && (JSON.parse(data.toString()) as { type?: string }).type === 'started') resolve();
    });
  });
  return { ws, closed };
}

describe('taking access away cuts open gateway work (oci)', { timeout: 180_000, skip }, () => {
  let server: GatewayTestServer;
  let dataDir: string;
  /** The server's log lines at level error (50) and above. */
  const errorLines: string[] = [];

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    dataDir = mkdtempSync(join(tmpdir(), 'corral-gwrevoke-'));
    await buildImage('busybox', TEST_IMAGE, await createRuntimeImages({ runtime: 'oci', dataDir }));
    const logger = pino({ level: 'error' }, { write: (line: string) => void errorLines.push(line) });
    server = await startGatewayServer({ runtime: 'oci', dataDir }, { logger });
  });
  after(async () => {
    await server?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /** A user with a second key, a running sandbox of theirs and a gateway token issued through the second key. */
  async function tenant(name: string): Promise<{ sb: GatewaySandbox; keyId: string; key: string; token: string; ownerKey: string }> {
    const user = await server.t.createUser(name);
    const created = await server.t.request('POST', '/api/v1/keys', { body: { user_id: user.id, name: 'second' } });
    assert.equal(created.statusCode, 201, created.body);
    const second = created.json<{ id: string; key: string }>();
    const sb = await createSandbox(server, {}, user.key);
    const auth = await server.t.request('POST', `/api/v1/sandbox/${sb.id}/auth`, { key: second.key });
    assert.equal(auth.statusCode, 200, auth.body);
    return { sb, keyId: second.id, key: second.key, token: auth.json<{ token: string }>().token, ownerKey: user.key };
  }

  it('revoking a key closes its open streaming-exec session and kills the process within 2 s', async () => {
    const { sb, keyId, key, token, ownerKey } = await tenant('ws-revokee');
    const { closed } = await openSession(sb, token, ['sh', '-c', 'echo $$ > /tmp/ws.pid; exec sleep 120']);
    const owner = await ownerView(sb, ownerKey);
    // Revoked only once the process runs (wrote its pid), so its death is the revocation's doing.
    await pidWritten(owner, '/tmp/ws.pid');
    const revokedAt = Date.now();
    assert.equal((await server.t.request('DELETE', `/api/v1/keys/${keyId}`, { key })).statusCode, 200);
    const { code, at } = await Promise.race([closed, new Promise<{ code: number; at: number }>((r) => setTimeout(() => r({ code: -1, at: Date.now() }), 5_000))]);
    assert.notEqual(code, -1, 'the session was still open 5 s after its key was revoked');
    assert.ok(at - revokedAt <= 2_000, `closed ${at - revokedAt} ms after the revocation`);
    // The sandbox's other access (its owner's own key) still works, and the session's process is gone.
    await processGone(owner, '/tmp/ws.pid');
  });

  it('revoking a key cuts its exec in flight, and the command is killed', async () => {
    const { sb, keyId, key, token, ownerKey } = await tenant('exec-revokee');
    const running = execCall({ ...sb, token }, { command: 'echo $$ > /tmp/exec.pid; exec sleep 120', timeout: 300 }).then(
      (r) => ({ cut: false as const, status: r.status }),
      () => ({ cut: true as const, status: 0 }),
    );
    const owner = await ownerView(sb, ownerKey);
    await pidWritten(owner, '/tmp/exec.pid');
    const revokedAt = Date.now();
    assert.equal((await server.t.request('DELETE', `/api/v1/keys/${keyId}`, { key })).statusCode, 200);
    const outcome = await Promise.race([running, new Promise<{ cut: false; status: -1 }>((r) => setTimeout(() => r({ cut: false, status: -1 }), 5_000))]);
    assert.notEqual(outcome.status, -1, 'the exec was still running 5 s after its key was revoked');
    assert.ok(Date.now() - revokedAt <= 2_500, `cut ${Date.now() - revokedAt} ms after the revocation`);
    assert.ok(outcome.cut, `the call ended with a response (${outcome.status}) instead of being cut`);
    await processGone(owner, '/tmp/exec.pid');
  });

  it('an exec answer cut short (its client gone, or its sandbox deleted) is not a server error', async () => {
    const { sb, token, ownerKey } = await tenant('walks-away');
    const { hostname, port } = new URL(sb.base);
    const path = new URL(`${sb.base}/exec`).pathname;
    /** Starts an exec whose answer is large and slow, and resolves once its first bytes arrive. */
    const startLargeAnswer = async (): Promise<{ socket: ReturnType<typeof netConnect>; closed: Promise<void> }> => {
      const body = JSON.stringify({ command: 'i=0; while [ $i -lt 400 ]; do head -c 65536 /dev/zero; sleep 0.02; i=$((i+1)); done', sandbox_id: sb.id, working_dir: null, env: {}, timeout: 60 });
      const socket = netConnect({ host: hostname, port: Number(port) });
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      await new Promise<void>((resolve) => socket.once('data', () => resolve()));
      return { socket, closed };
    };
    const before = errorLines.length;
    const walker = await startLargeAnswer();
    walker.socket.destroy();
    const cut = await startLargeAnswer();
    cut.socket.resume();
    assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/${sb.id}`, { key: ownerKey })).statusCode, 200);
    await Promise.race([cut.closed, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(errorLines.slice(before), [], 'the server logged errors for answers cut short');
  });

  /** The sandbox with a token through its owner's own key (not the revoked one). */
  async function ownerView(sb: GatewaySandbox, ownerKey: string): Promise<GatewaySandbox> {
    const auth = await server.t.request('POST', `/api/v1/sandbox/${sb.id}/auth`, { key: ownerKey });
    assert.equal(auth.statusCode, 200, auth.body);
    return { ...sb, token: auth.json<{ token: string }>().token };
  }

  /** Waits (10 s at most) until a process in the sandbox wrote its pid to `pidFile`. */
  async function pidWritten(owner: GatewaySandbox, pidFile: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await execCall(owner, { command: `cat ${pidFile} 2>/dev/null || true` });
      if (/^\d+$/.test(r.body.stdout.trim())) return;
      assert.ok(Date.now() < deadline, `no pid in ${pidFile} 10 s after the command started`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Waits (10 s at most) until the process whose pid the sandbox wrote to `pidFile` is gone. */
  async function processGone(owner: GatewaySandbox, pidFile: string): Promise<void> {
    const pid = (await execCall(owner, { command: `cat ${pidFile}` })).body.stdout.trim();
    assert.match(pid, /^\d+$/);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await execCall(owner, { command: `kill -0 ${pid} 2>/dev/null && echo alive || echo gone` });
      if (r.body.stdout.trim() === 'gone') return;
      assert.ok(Date.now() < deadline, `process ${pid} still runs 10 s after its access was revoked`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
});

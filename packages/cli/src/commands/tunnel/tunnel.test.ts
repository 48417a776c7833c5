import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type IncomingMessage, type Server, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { startTestServer, type TestServer } from '@corral/server/testing';

const ENTRY = fileURLToPath(new URL('../../main.ts', import.meta.url));

/** A local app: GET echo, /stream chunks, POST → "<bytes> <sha256>", /ws WebSocket echo. */
function startLocalApp(): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method === 'POST') {
      const hash = createHash('sha256');
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        hash.update(c);
      });
      req.on('end', () => res.end(`${size} ${hash.digest('hex')}`));
      return;
    }
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let n = 0;
      const timer = setInterval(() => {
        res.write(`tick ${n}\n`);
        if (++n === 4) {
          clearInterval(timer);
          res.end();
        }
      }, 300);
      return;
    }
    res.end(`local says ${req.method} ${req.url} host=${req.headers.host}`);
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function viaHost(apiUrl: string, host: string, path: string, options: { method?: string; body?: Buffer; headers?: Record<string, string> } = {}) {
  const url = new URL(apiUrl);
  return new Promise<{ status: number; body: string; firstChunkMs: number }>((resolve, reject) => {
    const started = Date.now();
    const req = httpRequest({ host: url.hostname, port: Number(url.port), path, method: options.method ?? 'GET', headers: { host, ...(options.headers ?? {}) } }, (res: IncomingMessage) => {
      let body = '';
      let firstChunkMs = -1;
      res.on('data', (c: Buffer) => {
        if (firstChunkMs < 0) firstChunkMs = Date.now() - started;
        body += c.toString('utf8');
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, firstChunkMs }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `corral tunnel start` as a child process; resolves once it printed the URL. */
async function startCli(apiUrl: string, key: string, port: number, extra: string[] = []): Promise<{ child: ChildProcess; url: string; id: string; stderr: () => string }> {
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', ENTRY, 'tunnel', 'start', '--port', String(port), ...extra], {
    env: { ...process.env, CORRAL_API_URL: apiUrl, CORRAL_API_KEY: key },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  let stdout = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
      if (stdout.includes('\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`corral tunnel start exited ${code}: ${stderr}`)));
  });
  const url = stdout.split('\n')[0] as string;
  return { child, url, id: new URL(url).hostname.split('.')[0] as string, stderr: () => stderr };
}

describe('tunnels: corral tunnel start', () => {
  let t: TestServer;
  let apiUrl: string;
  let app: Server;
  let appPort: number;
  const children: ChildProcess[] = [];

  before(async () => {
    app = await startLocalApp();
    appPort = (app.address() as AddressInfo).port;
    t = await startTestServer({ maxTunnelsPerUser: 4, reconcileIntervalMs: 200 });
    apiUrl = await t.server.listen();
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await t?.close();
    app?.closeAllConnections();
    await new Promise((r) => app?.close(r));
  });

  const api = async (method: string, path: string, body?: unknown, key = t.adminKey) => {
    const res = await fetch(`${apiUrl}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  test('serves HTTP (streaming, large bodies) and WebSockets from the local port; survives a server restart; SIGINT deletes it', async () => {
    const cli = await startCli(apiUrl, t.adminKey, appPort, ['--name', 'dev', '--label', 'ci']);
    children.push(cli.child);
    assert.match(cli.url, /^http:\/\/t-[0-9a-f]+\.localhost:\d+$/);
    const host = new URL(cli.url).host;
    await eventually(async () => (await api('GET', `/tunnel/${cli.id}`)).body.status === 'connected', 'tunnel to connect');
    const status = await api('GET', `/tunnel/${cli.id}`);
    assert.equal(status.body.name, 'dev');
    assert.deepEqual(status.body.labels, ['ci']);
    assert.ok(status.body.connected_at);

    const hello = await viaHost(apiUrl, host, '/hello?x=1');
    assert.equal(hello.body, `local says GET /hello?x=1 host=${host}`);
    const stream = await viaHost(apiUrl, host, '/stream');
    assert.equal(stream.body, 'tick 0\ntick 1\ntick 2\ntick 3\n', JSON.stringify(stream));
    assert.ok(stream.firstChunkMs < 800, `first chunk after ${stream.firstChunkMs} ms`);
    const big = randomBytes(8 * 1024 * 1024);
    const posted = await viaHost(apiUrl, host, '/upload', { method: 'POST', body: big });
    assert.equal(posted.body, `${big.length} ${createHash('sha256').update(big).digest('hex')}`);
    const ws = new WebSocket(`ws://${new URL(apiUrl).host}/ws`, { headers: { host } });
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('through the tunnel'));
      ws.once('message', (d) => resolve(String(d)));
      ws.once('error', reject);
    });
    assert.equal(echoed, 'through the tunnel');
    ws.close();

    // The link drops (server restart on the same port and data dir): the client reconnects.
    const port = Number(new URL(apiUrl).port);
    await t.server.close();
    const dataDir = t.dataDir;
    const key = t.adminKey;
    t = await startTestServer({ maxTunnelsPerUser: 4, reconcileIntervalMs: 200, port, dataDir, bootstrapApiKey: key });
    apiUrl = await t.server.listen();
    await eventually(async () => (await viaHost(apiUrl, host, '/again').catch(() => ({ status: 0, body: '' }))).status === 200, 'tunnel to come back', 20_000);
    assert.match(cli.stderr(), /reconnecting/);

    cli.child.kill('SIGINT');
    const [code] = (await once(cli.child, 'exit')) as [number | null];
    assert.equal(code, 0, cli.stderr());
    assert.equal((await api('GET', `/tunnel/${cli.id}`)).status, 404);
    assert.equal((await viaHost(apiUrl, host, '/')).status, 404);
  });

  test('deleting or expiring a tunnel ends its client; a tunnel without a client answers 502', async () => {
    const cli = await startCli(apiUrl, t.adminKey, appPort);
    children.push(cli.child);
    await eventually(async () => (await api('GET', `/tunnel/${cli.id}`)).body.status === 'connected', 'tunnel to connect');
    assert.equal((await api('DELETE', `/tunnel/${cli.id}`)).status, 200);
    const [code] = (await once(cli.child, 'exit')) as [number | null];
    assert.equal(code, 1);
    assert.match(cli.stderr(), /tunnel deleted/);
    assert.equal((await api('DELETE', `/tunnel/${cli.id}`)).status, 404);

    // Expiry: a tunnel stored to expire in 1.5 s.
    const created = await api('POST', '/tunnel', { local_port: appPort });
    assert.equal(created.status, 201);
    const id = created.body.tunnel_id as string;
    const host = new URL(created.body.url as string).host;
    const unbound = await viaHost(apiUrl, host, '/');
    assert.equal(unbound.status, 502);
    assert.match(unbound.body, /no client connected/);
    const row = await t.server.store.getTunnel(id);
    assert.ok(row);
    await t.server.store.deleteTunnel(id);
    await t.server.store.insertTunnel({ ...row, expiresAt: new Date(Date.now() + 1500).toISOString() });
    await eventually(async () => (await api('GET', `/tunnel/${id}`)).body.status === 'expired', 'tunnel to expire');
    assert.equal((await viaHost(apiUrl, host, '/')).status, 410);
    // The sweep stores the expired status (a GET reports it from the expiry time at once).
    await eventually(
      async () => ((await api('GET', '/tunnel?status=expired')).body.tunnels as Array<{ tunnel_id: string }>).some((x) => x.tunnel_id === id),
      'the expired status to be stored',
    );
    assert.equal((await api('DELETE', '/tunnel', { tunnel_ids: [id, 't-missing'] })).body.message, 'Deleted 1 tunnel(s), 1 failed');
  });

  test('only the owner binds with the binding secret; foreign tenants get 404; bad input; the per-user limit', async () => {
    const created = await api('POST', '/tunnel', { local_port: appPort, http_user: 'alice' });
    assert.equal(created.status, 201);
    assert.equal(created.body.server_port, Number(new URL(apiUrl).port));
    assert.ok(created.body.frp_token && created.body.binding_secret && created.body.http_password);
    const id = created.body.tunnel_id as string;
    const connectUrl = created.body.connect_url as string;
    const other = await t.createUser(`tunnel-other-${randomBytes(3).toString('hex')}`);
    assert.equal((await api('GET', `/tunnel/${id}`, undefined, other.key)).status, 404);
    assert.equal((await api('DELETE', `/tunnel/${id}`, undefined, other.key)).status, 404);
    assert.deepEqual((await api('GET', '/tunnel', undefined, other.key)).body.tunnels, []);

    const bindStatus = (key: string, secret: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(connectUrl, { headers: { authorization: `Bearer ${key}`, 'x-corral-binding-secret': secret } });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => {
          ws.close();
          resolve(101);
        });
        ws.on('error', () => undefined);
      });
    assert.equal(await bindStatus(other.key, created.body.binding_secret as string), 404);
    assert.equal(await bindStatus(t.adminKey, 'wrong'), 403);
    assert.equal(await bindStatus('nope', created.body.binding_secret as string), 401);

    assert.equal(await bindStatus(t.adminKey, created.body.binding_secret as string), 101);
    // Created with http_user: the URL needs basic auth.
    const host = new URL(created.body.url as string).host;
    assert.equal((await viaHost(apiUrl, host, '/')).status, 401);
    const basic = Buffer.from(`alice:${created.body.http_password as string}`).toString('base64');
    assert.notEqual((await viaHost(apiUrl, host, '/', { headers: { authorization: `Basic ${basic}` } })).status, 401);

    assert.equal((await api('POST', '/tunnel', { local_port: 0 })).status, 422);
    assert.equal((await api('POST', '/tunnel', { local_port: 8000, name: 'x'.repeat(65) })).status, 422);
    const limited = [];
    for (let i = 0; i < 5; i++) limited.push(await api('POST', '/tunnel', { local_port: 8000 }));
    const refused = limited.find((r) => r.status === 400);
    assert.ok(refused, 'the per-user limit refuses with 400');
    assert.match(JSON.stringify(refused.body), /maximum number of/);
  });
});

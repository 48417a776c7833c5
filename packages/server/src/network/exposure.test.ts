import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { createSandbox, dockerMissing, startGatewayServer, type GatewaySandbox, type GatewayTestServer } from '../gateway/test-support.js';
import { ECHO_SERVER_PY, api, canConnect, eventually, hostOf, hostRequest } from './network-test-support.js';

interface Exposure {
  exposure_id: string;
  url: string;
  port: number;
  protocol: string;
  external_port: number | null;
  external_endpoint: string | null;
  access_token?: string;
}

describe('port exposure (docker)', { skip: process.env.CI !== 'true' && dockerMissing('python:3.11-slim') !== undefined }, () => {
  let server: GatewayTestServer;
  /** busybox, no network: reached through an exec'd `nc` relay. Serves /www with httpd on 8000. */
  let isolated: GatewaySandbox;
  /** python, on the egress bridge: reached at its container address. Runs echo-server.py on 8000. */
  let python: GatewaySandbox;

  // Skipped without Docker (and the python image), except on CI where the missing engine fails the suite here.
  before(async () => {
    server = await startGatewayServer({ tcpPortRange: `${31000 + Math.floor(Math.random() * 500)}-31999` });
    [isolated, python] = await Promise.all([
      createSandbox(server, { network_access: false, start_command: 'mkdir -p /www && echo hello-isolated > /www/index.html && httpd -f -p 8000 -h /www' }),
      createSandbox(server, {
        docker_image: 'python:3.11-slim',
        network_access: true,
        environment_vars: { ECHO_PY: ECHO_SERVER_PY },
        start_command: 'exec python3 -c "$ECHO_PY" 8000',
      }),
    ]);
  });
  after(async () => {
    await server?.close();
  });

  const expose = (sb: GatewaySandbox, body: Record<string, unknown>, key?: string) => api<Exposure>(server, 'POST', `/sandbox/${sb.id}/expose`, body, key);

  test('HTTP exposure of a sandbox without network (exec relay): GET, keep-alive, 502 while nothing listens', async () => {
    const created = await expose(isolated, { port: 8000, name: 'web' });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.match(created.body.url, /^http:\/\/[0-9a-f-]+\.localhost:\d+\/$/);
    assert.equal(created.body.protocol, 'HTTP');
    const host = hostOf(created.body.url);
    await eventually(async () => (await hostRequest(server.url, host, '/index.html')).status === 200, 15_000, 'httpd');
    const res = await hostRequest(server.url, host, '/index.html');
    assert.equal(res.body, 'hello-isolated\n');

    const closed = await expose(isolated, { port: 8999 });
    const bad = await hostRequest(server.url, hostOf(closed.body.url), '/');
    assert.equal(bad.status, 502);
    assert.match(bad.body, /Bad Gateway/);
    assert.match(bad.body, /port 8999/);

    const unknown = await hostRequest(server.url, `nope.localhost`, '/');
    assert.equal(unknown.status, 404);
    // The API itself is untouched by the Host router.
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
  });

  test('HTTP exposure on the bridge: streaming, large bodies, WebSocket upgrade', async () => {
    const created = await expose(python, { port: 8000 });
    const host = hostOf(created.body.url);
    await eventually(async () => (await hostRequest(server.url, host, '/')).status === 200, 20_000, 'python server');
    const hello = await hostRequest(server.url, host, '/x?y=1');
    assert.equal(hello.body, `hello from /x?y=1 host=${host}\n`);

    // Streaming: the first tick arrives long before the response ends.
    const url = new URL(server.url);
    const firstTickAt = await new Promise<number>((resolve, reject) => {
      const started = Date.now();
      const req = httpRequest({ host: url.hostname, port: Number(url.port), path: '/stream/5', headers: { host } }, (res) => {
        res.once('data', () => resolve(Date.now() - started));
        res.resume();
      });
      req.on('error', reject);
      req.end();
    });
    assert.ok(firstTickAt < 1000, `first chunk after ${firstTickAt} ms`);

    const big = randomBytes(24 * 1024 * 1024);
    const posted = await hostRequest(server.url, host, '/upload', { method: 'POST', body: big, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(posted.body, `${big.length} ${createHash('sha256').update(big).digest('hex')}\n`);

    const ws = new WebSocket(`ws://${url.host}/ws`, { headers: { host } });
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('ping over the proxy'));
      ws.once('message', (data) => resolve(String(data)));
      ws.once('error', reject);
    });
    assert.equal(echoed, 'ping over the proxy');
    ws.close();
  });

  test('private exposure needs its token (header, or ?corral_token= which sets a cookie)', async () => {
    const created = await expose(python, { port: 8000, auth: 'token' });
    assert.equal(created.status, 200);
    const token = created.body.access_token as string;
    assert.ok(token);
    const host = hostOf(created.body.url);
    assert.equal((await hostRequest(server.url, host, '/')).status, 401);
    assert.equal((await hostRequest(server.url, host, '/', { headers: { 'x-corral-exposure-token': 'wrong' } })).status, 403);
    assert.equal((await hostRequest(server.url, host, '/', { headers: { 'x-corral-exposure-token': token } })).status, 200);
    const signed = await hostRequest(server.url, host, `/p?corral_token=${token}`);
    assert.equal(signed.body, `hello from /p host=${host}\n`);
    assert.match(String(signed.headers['set-cookie']), /corral_exposure_token=/);
    const listed = await api<{ exposures: Array<Record<string, unknown>> }>(server, 'GET', `/sandbox/${python.id}/expose`);
    assert.equal(listed.body.exposures.find((e) => e.exposure_id === created.body.exposure_id)?.auth, 'token');
    assert.equal(listed.body.exposures.find((e) => e.exposure_id === created.body.exposure_id)?.access_token, undefined);
  });

  test('TCP exposure: a real listener on an external port; deleting it cuts open connections and frees the port', async () => {
    const created = await expose(isolated, { port: 8000, protocol: 'TCP' });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const port = created.body.external_port as number;
    assert.equal(created.body.external_endpoint, `127.0.0.1:${port}`);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port });
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      socket.on('error', reject);
      socket.write('GET /index.html HTTP/1.0\r\n\r\n');
    });
    assert.match(reply, /^HTTP\/1\.[01] 200/);
    assert.match(reply, /hello-isolated/);

    // An open, idle connection is cut when the exposure is deleted.
    const open = connect({ host: '127.0.0.1', port });
    await new Promise((r) => open.once('connect', r));
    const cut = new Promise<void>((resolve) => open.once('close', () => resolve()));
    open.on('error', () => undefined);
    open.resume();
    await new Promise((r) => setTimeout(r, 300));
    const deleted = await api(server, 'DELETE', `/sandbox/${isolated.id}/expose/${created.body.exposure_id}`);
    assert.equal(deleted.status, 200);
    await cut;
    assert.equal(await canConnect(port), false);
    assert.equal((await api(server, 'DELETE', `/sandbox/${isolated.id}/expose/${created.body.exposure_id}`)).status, 404);
  });

  test('bad input, foreign tenants and listings', async () => {
    assert.equal((await expose(isolated, { port: 21 })).status, 422);
    assert.equal((await expose(isolated, { port: 9001 })).status, 422);
    assert.equal((await expose(isolated, { port: 8000, protocol: 'UDP' })).status, 422);
    assert.equal((await expose(isolated, { port: 8000, protocol: 'TCP', auth: 'token' })).status, 422);
    const other = await server.t.createUser(`other-${randomBytes(3).toString('hex')}`);
    assert.equal((await expose(isolated, { port: 8000 }, other.key)).status, 404);
    assert.equal((await api(server, 'GET', `/sandbox/${isolated.id}/expose`, undefined, other.key)).status, 404);
    const mine = await expose(isolated, { port: 8000 });
    assert.equal((await api(server, 'DELETE', `/sandbox/${isolated.id}/expose/${mine.body.exposure_id}`, undefined, other.key)).status, 404);
    assert.equal((await api(server, 'DELETE', `/sandbox/${python.id}/expose/${mine.body.exposure_id}`)).status, 404);
    const theirs = await api<{ exposures: unknown[] }>(server, 'GET', '/sandbox/expose/all', undefined, other.key);
    assert.deepEqual(theirs.body.exposures, []);
    const all = await api<{ exposures: Array<{ sandbox_id: string; created_at: string }> }>(server, 'GET', '/sandbox/expose/all');
    assert.ok(all.body.exposures.some((e) => e.sandbox_id === isolated.id));
    assert.ok(all.body.exposures.some((e) => e.sandbox_id === python.id));
    assert.ok(all.body.exposures.every((e) => typeof e.created_at === 'string'));
  });

  test('when the sandbox ends, its exposures, listeners and open connections go', async () => {
    const http = await expose(isolated, { port: 8000 });
    const tcp = await expose(isolated, { port: 8000, protocol: 'TCP' });
    const port = tcp.body.external_port as number;
    assert.equal(await canConnect(port), true);
    const open = connect({ host: '127.0.0.1', port });
    open.on('error', () => undefined);
    open.resume();
    await new Promise((r) => open.once('connect', r));
    const cut = new Promise<void>((resolve) => open.once('close', () => resolve()));
    assert.equal((await api(server, "DELETE", `/sandbox/${isolated.id}`)).status, 200);
    await cut;
    await eventually(async () => !(await canConnect(port)), 15_000, 'TCP listener to close');
    await eventually(async () => (await server.t.server.store.getExposure(http.body.exposure_id)) === undefined, 15_000, 'exposure rows to go');
    assert.equal((await hostRequest(server.url, hostOf(http.body.url), '/')).status, 404);
  });
});

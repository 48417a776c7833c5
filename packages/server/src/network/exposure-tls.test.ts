import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createSandbox, dockerMissing, startGatewayServer, type GatewaySandbox, type GatewayTestServer } from '../gateway/test-support.js';
import { startTestServer } from '../testing/test-server.js';
import { api, eventually, hostOf } from './network-test-support.js';

/** GET over HTTPS to the TLS listener with a given Host (and SNI), trusting the test's self-signed certificate. */
function tlsGet(port: number, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername: host.split(':')[0], headers: { host }, rejectUnauthorized: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('HTTPS for exposures when a certificate is configured', { skip: process.env.CI !== 'true' && dockerMissing() !== undefined }, () => {
  const certDir = mkdtempSync(join(tmpdir(), 'corral-tls-'));
  const tlsPort = 42_000 + Math.floor(Math.random() * 2_000);
  let server: GatewayTestServer;
  let sandbox: GatewaySandbox;

  before(async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=*.localhost',
      '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });
    server = await startGatewayServer({ proxyTlsCert: join(certDir, 'cert.pem'), proxyTlsKey: join(certDir, 'key.pem'), proxyTlsPort: tlsPort });
    sandbox = await createSandbox(server, { network_access: false, start_command: 'mkdir -p /www && echo hello-tls > /www/index.html && httpd -f -p 8000 -h /www' });
  });
  after(async () => {
    await server?.close();
    rmSync(certDir, { recursive: true, force: true });
  });

  test('TLS ends at Corral and the request reaches the sandbox; other hosts get 404', async () => {
    const created = await api<{ url: string; tls_socket: string }>(server, 'POST', `/sandbox/${sandbox.id}/expose`, { port: 8000 });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const host = hostOf(created.body.url).split(':')[0] as string;
    assert.equal(created.body.tls_socket, `${host}:${tlsPort}`);
    await eventually(async () => (await tlsGet(tlsPort, host, '/index.html')).status === 200, 15_000, 'httpd over TLS');
    assert.deepEqual(await tlsGet(tlsPort, host, '/index.html'), { status: 200, body: 'hello-tls\n' });
    assert.equal((await tlsGet(tlsPort, 'unknown.localhost', '/')).status, 404);
  });

  test('an exposure survives a server restart (the sandbox keeps running meanwhile)', async () => {
    const created = await api<{ url: string; exposure_id: string }>(server, 'POST', `/sandbox/${sandbox.id}/expose`, { port: 8000, name: 'kept' });
    assert.equal(created.status, 200);
    const host = hostOf(created.body.url).split(':')[0] as string;
    await eventually(async () => (await tlsGet(tlsPort, host, '/index.html')).status === 200, 15_000, 'httpd over TLS');
    const { config } = server.t.server;
    // Stop only the server: its sandboxes and stored exposures stay.
    await server.t.server.close();
    const restarted = await startTestServer({ ...config, bootstrapApiKey: server.t.adminKey });
    try {
      await restarted.server.listen();
      await eventually(async () => (await tlsGet(tlsPort, host, '/index.html').catch(() => ({ status: 0 }))).status === 200, 15_000, 'exposure after restart');
      const listed = await restarted.request('GET', `/api/v1/sandbox/${sandbox.id}/expose`);
      assert.ok(listed.json<{ exposures: Array<{ exposure_id: string }> }>().exposures.some((e) => e.exposure_id === created.body.exposure_id));
    } finally {
      server = { t: restarted, url: '', close: async () => {
        const runtime = restarted.server.runtime;
        if (runtime) for (const c of await runtime.list()) await runtime.remove(c.runtimeId).catch(() => undefined);
        await restarted.close();
        rmSync(config.dataDir, { recursive: true, force: true });
      } };
    }
  });
});

import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { CorralClient, Sandbox } from '@corral/sdk';
import { type ListeningServer, TEST_IMAGE, dockerMissing, needDocker, startServer } from '../../testing/cli-test-server.js';
import { runCli } from '../../testing/spawn-cli.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** GET `/` on the server's own listener with the Host of an exposure URL (`*.localhost` resolves to loopback anyway; this needs no resolver). */
function getVia(serverUrl: string, exposureUrl: string): Promise<{ status: number; body: string }> {
  const server = new URL(serverUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: server.hostname, port: server.port, path: '/', headers: { host: new URL(exposureUrl).host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

// Each step spawns the CLI (a Node process loading the CLI from source): on a loaded host that is seconds per call.
describe('corral sandbox expose|ports|unexpose|ssh against a real server', { timeout: 240_000 }, () => {
  let server: ListeningServer;
  let env: NodeJS.ProcessEnv;
  let sandbox: Sandbox;
  before(async () => {
    if (dockerMissing()) return;
    server = await startServer({ sshPort: 0 });
    env = { CORRAL_API_URL: server.url, CORRAL_API_KEY: server.t.adminKey, XDG_CONFIG_HOME: '/nonexistent-corral-config' };
    const client = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey });
    sandbox = await Sandbox.create(client, {
      image: TEST_IMAGE,
      memoryGb: 0.25,
      networkAccess: false,
      startCommand: "sh -c 'mkdir -p /www && echo hello-corral > /www/index.html && exec httpd -f -p 8000 -h /www'",
    });
    await sandbox.waitUntilRunning();
  });
  after(async () => {
    await sandbox?.delete().catch(() => undefined);
    await server?.close();
  });

  it('expose prints a URL that serves the sandbox port; ports lists it; unexpose removes it', async (t) => {
    if (!needDocker(t)) return;
    const exposed = await runCli(['sandbox', 'expose', sandbox.id, '8000', '--name', 'web'], env);
    assert.equal(exposed.code, 0, exposed.stderr);
    const url = exposed.stdout.trim();
    assert.match(url, /^http:\/\/[a-z0-9-]+\.localhost:\d+\/$/);
    const exposureId = new URL(url).hostname.split('.')[0] as string;

    let answer = await getVia(server.url, url);
    for (let i = 0; i < 50 && answer.status !== 200; i++) {
      await sleep(200);
      answer = await getVia(server.url, url);
    }
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.body, 'hello-corral\n');

    const one = await runCli(['sandbox', 'ports', sandbox.id, '--output', 'json'], env);
    assert.equal(one.code, 0, one.stderr);
    const listed = JSON.parse(one.stdout) as { exposures: Array<{ exposure_id: string; port: number; name: string | null }> };
    assert.deepEqual(
      listed.exposures.filter((e) => e.exposure_id === exposureId).map((e) => [e.port, e.name]),
      [[8000, 'web']],
    );
    const all = await runCli(['sandbox', 'ports'], env);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /^EXPOSURE_ID\s+SANDBOX_ID\s+PORT\s+PROTOCOL\s+NAME\s+ENDPOINT/);
    assert.match(all.stdout, new RegExp(`${exposureId}\\s+${sandbox.id}\\s+8000\\s+HTTP\\s+web\\s+${url.replace(/[/.]/g, '\\$&')}`));

    const removed = await runCli(['sandbox', 'unexpose', sandbox.id, exposureId], env);
    assert.equal(removed.code, 0, removed.stderr);
    const remaining = JSON.parse((await runCli(['sandbox', 'ports', sandbox.id, '-o', 'json'], env)).stdout) as { exposures: Array<{ exposure_id: string }> };
    assert.equal(remaining.exposures.some((e) => e.exposure_id === exposureId), false);
    assert.equal((await getVia(server.url, url)).status, 404);
    const again = await runCli(['sandbox', 'unexpose', sandbox.id, exposureId], env);
    assert.equal(again.code, 2);
  });

  it('expose --protocol TCP prints host:port; -o json prints the API object', async (t) => {
    if (!needDocker(t)) return;
    const tcp = await runCli(['sandbox', 'expose', sandbox.id, '8000', '--protocol', 'tcp', '-o', 'json'], env);
    assert.equal(tcp.code, 0, tcp.stderr);
    const body = JSON.parse(tcp.stdout) as { exposure_id: string; protocol: string; external_endpoint: string; external_port: number };
    assert.equal(body.protocol, 'TCP');
    assert.match(body.external_endpoint, /^[^:]+:\d+$/);
    const plain = await runCli(['sandbox', 'expose', sandbox.id, '8000', '--protocol', 'TCP'], env);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout.trim(), /^[^:/]+:\d+$/);
    const bad = await runCli(['sandbox', 'expose', sandbox.id, '8000', '--protocol', 'UDP'], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /HTTP or TCP/);
    for (const e of await sandbox.listPorts()) await sandbox.unexpose(e.exposure_id);
  });

  it("ssh runs a remote command with an ephemeral key and exits with its exit code", async (t) => {
    if (!needDocker(t)) return;
    const result = await runCli(['sandbox', 'ssh', sandbox.id, '--', 'echo hi; exit 7'], env);
    assert.equal(result.stdout, 'hi\n', result.stderr);
    assert.equal(result.code, 7, result.stderr);
  });

  it('SDK handle: expose, listPorts, unexpose round trip; createSshSession + authorize + close', async (t) => {
    if (!needDocker(t)) return;
    const exposure = await sandbox.expose(8000, { name: 'sdk' });
    assert.equal(exposure.protocol, 'HTTP');
    assert.equal(exposure.sandbox_id, sandbox.id);
    assert.ok((await sandbox.listPorts()).some((e) => e.exposure_id === exposure.exposure_id && e.name === 'sdk'));
    assert.equal((await sandbox.unexpose(exposure.exposure_id)).success, true);
    assert.equal((await sandbox.listPorts()).some((e) => e.exposure_id === exposure.exposure_id), false);

    const session = await sandbox.createSshSession({ ttlSeconds: 120 });
    assert.equal(session.ttl_seconds, 120);
    await assert.rejects(session.authorize('not a key'), (error: Error & { status?: number }) => error.status === 400);
    await session.authorize('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn3yy4lSFoIWzdTuJyB8Ez4FWUh6pAQ5jNzdN0Zpq6Q test');
    await session.close();
    await assert.rejects(session.authorize('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn3yy4lSFoIWzdTuJyB8Ez4FWUh6pAQ5jNzdN0Zpq6Q test'), (error: Error & { status?: number }) => error.status === 404);
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { buildImage, createRuntimeImages } from '@corral/server';
import { needNothingMissing, ociMissing } from '@corral/server/testing';
import { runCli, spawnCli, waitForHealthy } from '../testing/spawn-cli.js';

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

describe('corral serve over a real socket', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-serve-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it('prints a first admin key once, serves the API, stops cleanly on SIGTERM and keeps its data', async () => {
    const port = await freePort();
    const env = { CORRAL_DATA_DIR: dataDir, CORRAL_PORT: String(port), CORRAL_RUNTIME: 'none', CORRAL_LOG_LEVEL: 'warn' };
    const base = `http://127.0.0.1:${port}`;

    const first = spawnCli(['serve'], env);
    let stderr = '';
    first.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await waitForHealthy(`${base}/healthz`);
    const key = /corral_[A-Za-z0-9]{40}/.exec(stderr)?.[0];
    assert.ok(key, `no admin key printed: ${stderr}`);

    const created = await fetch(`${base}/api/v1/sandbox`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'persisted', docker_image: 'busybox', labels: ['keep'] }),
    });
    assert.equal(created.status, 201);
    const { id } = (await created.json()) as { id: string };

    first.kill('SIGTERM');
    const [code] = (await once(first, 'exit')) as [number | null];
    assert.equal(code, 0, 'SIGTERM ends the server with status 0');

    const second = spawnCli(['serve'], env);
    let secondErr = '';
    second.stderr?.on('data', (chunk: Buffer) => (secondErr += chunk.toString()));
    try {
      await waitForHealthy(`${base}/healthz`);
      assert.ok(!/corral_[A-Za-z0-9]{40}/.test(secondErr), 'the admin key is printed only on the first start');
      const fetched = await fetch(`${base}/api/v1/sandbox/${id}`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(fetched.status, 200);
      assert.deepEqual(((await fetched.json()) as { labels: string[] }).labels, ['keep']);

      const cli = { CORRAL_API_URL: base, CORRAL_API_KEY: key };
      const user = await runCli(['--output', 'json', 'users', 'create', 'carol', '--key'], cli);
      assert.equal(user.code, 0, user.stderr);
      const carolKey = (JSON.parse(user.stdout) as { key: string }).key;
      const listed = await runCli(['keys', 'list', '--output', 'json'], { CORRAL_API_URL: base, CORRAL_API_KEY: carolKey });
      assert.equal(listed.code, 0, listed.stderr);
      const keys = (JSON.parse(listed.stdout) as { keys: Array<{ id: string }> }).keys;
      assert.equal(keys.length, 1);
      const revoked = await runCli(['keys', 'revoke', keys[0]?.id ?? ''], { CORRAL_API_URL: base, CORRAL_API_KEY: carolKey });
      assert.equal(revoked.code, 0, revoked.stderr);
      const denied = await runCli(['keys', 'list'], { CORRAL_API_URL: base, CORRAL_API_KEY: carolKey });
      assert.equal(denied.code, 2);
      assert.match(denied.stderr, /Invalid or revoked API key.*CORRAL_API_KEY/);
      const teams = await runCli(['teams', 'create', 'ml'], cli);
      assert.equal(teams.code, 0, teams.stderr);
      assert.match(teams.stdout, /ml/);

      // The built server serves the dashboard `npm run build` bundled into packages/server/dist/dashboard.
      const page = await fetch(`${base}/`);
      if (page.status === 404 && process.env.CI !== 'true') {
        assert.match(((await page.json()) as { detail: string }).detail, /not built.*npm run build/);
      } else {
        assert.equal(page.status, 200, 'GET / serves the dashboard (npm run build bundles it)');
        assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
        const script = /src="(\/assets\/app-[A-Za-z0-9]+\.js)"/.exec(await page.text())?.[1];
        assert.ok(script, 'the page names its script');
        const js = await fetch(`${base}${script}`);
        assert.equal(js.status, 200);
        assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
      }
    } finally {
      second.kill('SIGTERM');
      await once(second, 'exit');
    }
  });

  it('says how to fix an unreachable server', async () => {
    const port = await freePort();
    const result = await runCli(['keys', 'list'], { CORRAL_API_URL: `http://127.0.0.1:${port}`, CORRAL_API_KEY: 'x' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /Cannot reach Corral at .*corral serve/);
  });

  it('documents every setting in serve --help and rejects a bad one by name', async () => {
    const help = await runCli(['serve', '--help']);
    assert.equal(help.code, 0);
    for (const name of ['CORRAL_HOST', 'CORRAL_PORT', 'CORRAL_DATA_DIR', 'DATABASE_URL', 'CORRAL_RUNTIME', 'CORRAL_BOOTSTRAP_API_KEY']) {
      assert.match(help.stdout, new RegExp(name));
    }
    const bad = await runCli(['serve'], { CORRAL_PORT: 'eighty', CORRAL_DATA_DIR: dataDir });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /CORRAL_PORT must be an integer/);
  });
});

describe('the built CLI (bin/corral.js, what scripts/serve.sh runs) on the default oci runtime', { timeout: 120_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-serve-built-'));
  let server: ReturnType<typeof spawnCli> | undefined;
  after(async () => {
    if (server && server.exitCode === null) {
      server.kill('SIGTERM');
      await once(server, 'exit');
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates a sandbox and runs a command in it through the gateway', async (t) => {
    if (!needNothingMissing(t, ociMissing())) return;
    const image = 'corral-test/busybox:built';
    await buildImage('busybox', image, await createRuntimeImages({ runtime: 'oci', dataDir }));
    const port = await freePort();
    const key = 'corral_built_cli_test_key_000000000000000000000';
    server = spawnCli(['serve'], { CORRAL_DATA_DIR: dataDir, CORRAL_PORT: String(port), CORRAL_BOOTSTRAP_API_KEY: key, CORRAL_LOG_LEVEL: 'warn' }, { built: true });
    let stderr = '';
    server.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const base = `http://127.0.0.1:${port}`;
    await waitForHealthy(`${base}/healthz`, 60_000);
    const call = async (method: string, path: string, body?: unknown, auth = `Bearer ${key}`): Promise<Record<string, unknown>> => {
      const response = await fetch(path.startsWith('http') ? path : `${base}/api/v1${path}`, {
        method,
        headers: { authorization: auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const json = (await response.json()) as Record<string, unknown>;
      assert.ok(response.ok, `${method} ${path}: ${response.status} ${JSON.stringify(json)}; server: ${stderr}`);
      return json;
    };
    const { id } = (await call('POST', '/sandbox', { name: 'built', docker_image: image })) as { id: string };
    let sandbox: Record<string, unknown> = {};
    for (let i = 0; i < 300 && sandbox.status !== 'RUNNING'; i++) {
      sandbox = await call('GET', `/sandbox/${id}`);
      assert.ok(sandbox.status !== 'ERROR', JSON.stringify(sandbox));
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(sandbox.status, 'RUNNING');
    const auth = (await call('POST', `/sandbox/${id}/auth`)) as { token: string; gateway_url: string; user_ns: string; job_id: string };
    const result = await call('POST', `${auth.gateway_url}/${auth.user_ns}/${auth.job_id}/exec`, { command: 'echo built; grep Seccomp: /proc/self/status', sandbox_id: id, timeout: 30 }, `Bearer ${auth.token}`);
    assert.equal(result.exit_code, 0, JSON.stringify(result));
    assert.match(String(result.stdout), /^built\nSeccomp:\s+2\n$/);
    await call('DELETE', `/sandbox/${id}`);
  });
});

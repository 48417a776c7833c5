import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
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

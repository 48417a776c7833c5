import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PausableRuntime, startTestServer, type TestServer } from '@corral/server/testing';
import { runCli } from '../../testing/spawn-cli.js';

describe('corral sandbox pause|resume against a real server', { timeout: 120_000 }, () => {
  let t: TestServer;
  let runtime: PausableRuntime;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    runtime = new PausableRuntime();
    runtime.openAll();
    t = await startTestServer({ instanceId: `cli-pause-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime });
    env = { CORRAL_API_URL: await t.server.listen(), CORRAL_API_KEY: t.adminKey, XDG_CONFIG_HOME: '/nonexistent-corral-config' };
  });
  after(async () => t.close());

  it('pauses and resumes (idempotently), prints id and status or JSON, and fails clearly on an ended sandbox', async () => {
    const created = await runCli(['sandbox', 'create', 'busybox:latest', '--output', 'json'], env);
    assert.equal(created.code, 0, created.stderr);
    const { id } = JSON.parse(created.stdout) as { id: string };
    for (let i = 0; i < 300 && (await t.server.store.getSandbox(id))?.status !== 'RUNNING'; i++) await new Promise((resolve) => setTimeout(resolve, 100));

    const paused = await runCli(['sandbox', 'pause', id], env);
    assert.equal(paused.code, 0, paused.stderr);
    assert.equal(paused.stdout, `${id} PAUSED\n`);
    assert.ok(runtime.frozen.has(`gated-${id}`));
    const again = await runCli(['sandbox', 'pause', id, '--output', 'json'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as { status: string }).status, 'PAUSED');

    const resumed = await runCli(['sandbox', 'resume', id], env);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(resumed.stdout, `${id} RUNNING\n`);
    assert.ok(!runtime.frozen.has(`gated-${id}`));

    assert.equal((await runCli(['sandbox', 'delete', id], env)).code, 0);
    const ended = await runCli(['sandbox', 'pause', id], env);
    assert.notEqual(ended.code, 0);
    assert.match(ended.stderr, /TERMINATED/);
    const unknown = await runCli(['sandbox', 'resume', 'nosuchsandbox0000000000000'], env);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /not found/i);
  });
});

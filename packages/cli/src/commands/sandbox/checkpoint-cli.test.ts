import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CheckpointingRuntime, startTestServer, type TestServer } from '@corral/server/testing';
import { runCli } from '../../testing/spawn-cli.js';

describe('corral sandbox checkpoint|checkpoints|fork against a real server', { timeout: 120_000 }, () => {
  let t: TestServer;
  let runtime: CheckpointingRuntime;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    runtime = new CheckpointingRuntime();
    runtime.openAll();
    t = await startTestServer({ instanceId: `cli-ckpt-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime });
    env = { CORRAL_API_URL: await t.server.listen(), CORRAL_API_KEY: t.adminKey, XDG_CONFIG_HOME: '/nonexistent-corral-config' };
  });
  after(async () => t.close());

  it('checkpoints (--wait), lists, forks a sandbox and a checkpoint, and fails clearly on bad input', async () => {
    const created = await runCli(['sandbox', 'create', 'busybox:latest', '--output', 'json'], env);
    assert.equal(created.code, 0, created.stderr);
    const { id } = JSON.parse(created.stdout) as { id: string };
    for (let i = 0; i < 300 && (await t.server.store.getSandbox(id))?.status !== 'RUNNING'; i++) await new Promise((resolve) => setTimeout(resolve, 100));

    const taken = await runCli(['sandbox', 'checkpoint', id, '--wait'], env);
    assert.equal(taken.code, 0, taken.stderr);
    const match = /^(\S+) DURABLE\n$/.exec(taken.stdout);
    assert.ok(match, taken.stdout);
    const checkpointId = match[1] as string;

    const listed = await runCli(['sandbox', 'checkpoints', id], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^ID\s+STATE\s+PARENT\s+DEPTH/);
    assert.match(listed.stdout, new RegExp(`${checkpointId}\\s+DURABLE\\s+-\\s+1\\s+4\\.0 KiB\\s+no`));

    const fromCheckpoint = await runCli(['sandbox', 'fork', '--checkpoint', checkpointId, '--count', '2', '-l', 'cli-fork'], env);
    assert.equal(fromCheckpoint.code, 0, fromCheckpoint.stderr);
    const forkIds = fromCheckpoint.stdout.trim().split('\n');
    assert.equal(forkIds.length, 2);
    for (const forkId of forkIds) {
      const row = await t.server.store.getSandbox(forkId);
      assert.equal(row?.checkpointId, checkpointId);
      assert.deepEqual(row?.labels, ['cli-fork']);
    }

    const fromSandbox = await runCli(['sandbox', 'fork', id, '--count', '1', '--output', 'json'], env);
    assert.equal(fromSandbox.code, 0, fromSandbox.stderr);
    const body = JSON.parse(fromSandbox.stdout) as { checkpoint: { state: string; parent_id: string }; sandboxes: Array<{ id: string }> };
    assert.equal(body.checkpoint.state, 'DURABLE');
    assert.equal(body.checkpoint.parent_id, checkpointId);
    assert.equal(body.sandboxes.length, 1);

    const noCount = await runCli(['sandbox', 'fork', id, '--count', '65'], env);
    assert.notEqual(noCount.code, 0);
    assert.match(noCount.stderr, /1 to 64/);
    const both = await runCli(['sandbox', 'fork', id, '--checkpoint', checkpointId, '--count', '1'], env);
    assert.notEqual(both.code, 0);
    assert.match(both.stderr, /one of them/);
    const memory = await runCli(['sandbox', 'checkpoint', id, '--memory'], env);
    assert.notEqual(memory.code, 0);
    assert.match(memory.stderr, /memory/);
    const unknown = await runCli(['sandbox', 'checkpoints', 'nosuchsandbox0000000000000'], env);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /not found/i);
  });
});

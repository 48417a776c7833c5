import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CheckpointingRuntime, PausableRuntime, type TestServer, startTestServer } from '@corral/server/testing';
import { waitForCheckpoint } from './checkpoints.js';
import { CorralClient } from './client.js';
import { CheckpointFailedError, ConflictError, NotFoundError, ValidationError } from './errors.js';
import { Sandbox, createRequest } from './sandbox.js';

async function untilRunning(sandbox: Sandbox): Promise<void> {
  // Not waitUntilRunning: the test runtime runs no probe command.
  for (let i = 0; i < 300 && (await sandbox.refresh()).status !== 'RUNNING'; i++) await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(sandbox.info.status, 'RUNNING');
}

describe('SDK checkpoints, restores and forks against a real server (checkpointing test runtime)', { timeout: 60_000 }, () => {
  let t: TestServer;
  let runtime: CheckpointingRuntime;
  let client: CorralClient;
  before(async () => {
    runtime = new CheckpointingRuntime();
    runtime.openAll();
    t = await startTestServer({ instanceId: `sdk-ckpt-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime });
    client = new CorralClient({ apiUrl: await t.server.listen(), apiKey: t.adminKey });
  });
  after(async () => t.close());

  it('checkpoints, waits, lists, restores with checkpointId, forks both ways and deletes', async () => {
    const sandbox = await Sandbox.create(client, { image: 'busybox:latest', diskSizeGb: 2 });
    await untilRunning(sandbox);
    const pending = await sandbox.checkpoint();
    assert.equal(pending.state, 'PENDING');
    const durable = await waitForCheckpoint(client, pending.id, { pollIntervalMs: 20 });
    assert.equal(durable.state, 'DURABLE');
    assert.equal((await client.sandboxes.getCheckpoint(pending.id)).id, pending.id);
    const waited = await sandbox.checkpoint({ wait: { pollIntervalMs: 20 } });
    assert.equal(waited.state, 'DURABLE');
    assert.equal(waited.parent_id, durable.id);
    assert.deepEqual((await sandbox.listCheckpoints()).map((c) => c.id), [waited.id, durable.id]);
    assert.deepEqual((await client.sandboxes.listCheckpoints(sandbox.id, durable.id)).checkpoints.map((c) => c.id), [durable.id]);
    assert.equal((await client.sandboxes.listAllCheckpoints({ per_page: 1 })).total, 2);

    const restored = await Sandbox.create(client, { checkpointId: durable.id });
    assert.equal(restored.info.dockerImage, 'busybox:latest');
    assert.equal(restored.info.diskSizeGB, 2);
    assert.equal(restored.info.checkpointId, durable.id);
    assert.deepEqual(runtime.specs.get(restored.id)?.checkpoint, { ref: `ckpt-${durable.id}`, memory: false });
    await assert.rejects(Sandbox.create(client, { checkpointId: durable.id, image: 'alpine:3' }), (error: unknown) => error instanceof ValidationError && error.fields.some((f) => f.param === 'docker_image'));
    assert.throws(() => createRequest({}), TypeError);

    const forks = await Sandbox.fork(client, durable.id, 2, { labels: ['forked'] });
    assert.equal(forks.length, 2);
    for (const f of forks) {
      assert.equal(f.info.checkpointId, durable.id);
      assert.deepEqual(f.info.labels, ['forked']);
    }
    const viaSandbox = await sandbox.fork(2);
    assert.equal(viaSandbox.checkpoint.state, 'DURABLE');
    assert.equal(viaSandbox.sandboxes.length, 2);

    await client.sandboxes.deleteCheckpoint(waited.id);
    await assert.rejects(client.sandboxes.getCheckpoint(waited.id), (error: unknown) => error instanceof NotFoundError && error.code === 'CHECKPOINT_NOT_FOUND');
    await assert.rejects(waitForCheckpoint(client, waited.id), NotFoundError);
  });

  it('raises CheckpointFailedError for a failed capture and rejects a bad timeout', async () => {
    const sandbox = await Sandbox.create(client, { image: 'busybox:latest' });
    await untilRunning(sandbox);
    runtime.failCaptures = 'no space left on device';
    try {
      await assert.rejects(sandbox.checkpoint({ wait: { pollIntervalMs: 20 } }), (error: unknown) => error instanceof CheckpointFailedError && error.state === 'FAILED' && /no space left/.test(error.message));
    } finally {
      runtime.failCaptures = null;
    }
    await assert.rejects(waitForCheckpoint(client, 'x', { timeoutMs: 0 }), RangeError);
    await assert.rejects(waitForCheckpoint(client, 'x', { timeoutMs: Number.NaN }), RangeError);
  });

  it('raises ConflictError (CHECKPOINT_UNSUPPORTED) on a driver without checkpoints', async () => {
    const plain = new PausableRuntime();
    plain.openAll();
    const other = await startTestServer({ instanceId: `sdk-nockpt-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime: plain });
    try {
      const otherClient = new CorralClient({ apiUrl: await other.server.listen(), apiKey: other.adminKey });
      const sandbox = await Sandbox.create(otherClient, { image: 'busybox:latest' });
      await untilRunning(sandbox);
      await assert.rejects(sandbox.checkpoint(), (error: unknown) => error instanceof ConflictError && error.code === 'CHECKPOINT_UNSUPPORTED');
      await assert.rejects(sandbox.fork(2), (error: unknown) => error instanceof ConflictError && error.code === 'CHECKPOINT_UNSUPPORTED');
    } finally {
      await other.close();
    }
  });
});

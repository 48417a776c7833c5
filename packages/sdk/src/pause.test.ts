import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { GatedRuntime, PausableRuntime, type TestServer, startTestServer } from '@corral/server/testing';
import { CorralClient } from './client.js';
import { ConflictError, NotFoundError } from './errors.js';
import { Sandbox } from './sandbox.js';

describe('SDK pause and resume against a real server (gated runtime)', { timeout: 60_000 }, () => {
  let t: TestServer;
  let runtime: PausableRuntime;
  let client: CorralClient;
  before(async () => {
    runtime = new PausableRuntime();
    runtime.openAll();
    t = await startTestServer({ instanceId: `sdk-pause-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime });
    client = new CorralClient({ apiUrl: await t.server.listen(), apiKey: t.adminKey });
  });
  after(async () => t.close());

  it('pauses and resumes through the Sandbox handle and the client, idempotently', async () => {
    const sandbox = await Sandbox.create(client, { image: 'busybox:latest' });
    // Not waitUntilRunning: the gated runtime runs no probe command.
    for (let i = 0; i < 300 && (await sandbox.refresh()).status !== 'RUNNING'; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(sandbox.info.status, 'RUNNING');
    assert.equal((await sandbox.pause()).status, 'PAUSED');
    assert.equal(sandbox.info.status, 'PAUSED');
    assert.equal((await client.sandboxes.pause(sandbox.id)).status, 'PAUSED');
    assert.deepEqual(runtime.calls, [`pause gated-${sandbox.id}`]);
    assert.equal((await sandbox.resume()).status, 'RUNNING');
    assert.equal((await client.sandboxes.resume(sandbox.id)).status, 'RUNNING');
    assert.deepEqual(runtime.calls, [`pause gated-${sandbox.id}`, `resume gated-${sandbox.id}`]);
    await sandbox.delete();
    await assert.rejects(sandbox.pause(), (error: unknown) => error instanceof ConflictError && /TERMINATED/.test(error.message));
    await assert.rejects(client.sandboxes.resume('nosuchsandbox0000000000000'), NotFoundError);
  });

  it('raises ConflictError (PAUSE_UNSUPPORTED) on a driver that cannot pause', async () => {
    const plain = new GatedRuntime();
    plain.openAll();
    const other = await startTestServer({ instanceId: `sdk-nopause-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime: plain });
    try {
      const otherClient = new CorralClient({ apiUrl: await other.server.listen(), apiKey: other.adminKey });
      const sandbox = await Sandbox.create(otherClient, { image: 'busybox:latest' });
      await assert.rejects(sandbox.pause(), (error: unknown) => error instanceof ConflictError && error.code === 'PAUSE_UNSUPPORTED' && /cannot pause/.test(error.message));
      await sandbox.delete();
    } finally {
      await other.close();
    }
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PausableRuntime, type TestServer, startTestServer } from '@corral/server/testing';
import { CorralClient } from './client.js';
import { ConflictError, NotFoundError } from './errors.js';
import type { SandboxEvent } from './events.js';
import { Sandbox } from './sandbox.js';

describe('SDK sandbox events against a real server (pausable runtime)', { timeout: 60_000 }, () => {
  let t: TestServer;
  let client: CorralClient;
  before(async () => {
    const runtime = new PausableRuntime();
    runtime.openAll();
    t = await startTestServer({ instanceId: `sdk-events-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime });
    client = new CorralClient({ apiUrl: await t.server.listen(), apiKey: t.adminKey });
  });
  after(async () => t.close());

  it('pages events and follows a whole life, pause and resume included, to its end', async () => {
    const sandbox = await Sandbox.create(client, { image: 'busybox:latest' });
    for (let i = 0; i < 300 && (await sandbox.refresh()).status !== 'RUNNING'; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    // The gated runtime reports zeros and runs no probe: disk and network are null.
    const stats = await sandbox.stats();
    assert.equal(stats.status, 'RUNNING');
    assert.deepEqual({ disk: stats.disk.usedBytes, network: stats.network, cores: stats.cpu.limitCores }, { disk: null, network: null, cores: 1 });
    const followed: SandboxEvent[] = [];
    const following = (async () => {
      for await (const event of sandbox.followEvents()) followed.push(event);
    })();
    await sandbox.pause();
    await sandbox.resume();
    await sandbox.delete();
    await following; // Ends by itself once the sandbox has ended.
    await assert.rejects(client.stats(sandbox.id), (error: unknown) => error instanceof ConflictError && /TERMINATED/.test(error.message));
    const moves = followed.filter((e) => e.type === 'sandbox.status').map((e) => `${String(e.data.to)}:${String(e.data.reason)}`);
    assert.deepEqual(moves, ['PROVISIONING:admitted', 'RUNNING:started', 'PAUSED:paused', 'RUNNING:resumed', 'TERMINATED:deleted']);
    assert.equal(followed[0]?.type, 'sandbox.created');

    const first = await client.events(sandbox.id, { limit: 2 });
    assert.equal(first.hasMore, true);
    assert.deepEqual(first.events.map((e) => e.id), followed.slice(0, 2).map((e) => e.id));
    const rest = await sandbox.events({ after: first.events[1]?.id as string, limit: 1000 });
    assert.deepEqual(rest.events.map((e) => e.id), followed.slice(2).map((e) => e.id));
    // Following an ended sandbox from an id gives what came after it, then ends.
    const tail: SandboxEvent[] = [];
    for await (const event of client.followEvents(sandbox.id, { after: followed.at(-2)?.id as string })) tail.push(event);
    assert.deepEqual(tail.map((e) => e.id), [followed.at(-1)?.id]);
    await assert.rejects(client.events('nosuchsandbox0000000000000'), NotFoundError);
    await assert.rejects(async () => {
      for await (const _ of client.followEvents('nosuchsandbox0000000000000')) break;
    }, NotFoundError);
  });
});

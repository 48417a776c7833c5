import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { GatedRuntime, type TestServer, startTestServer } from '@corral/server/testing';
import { CorralClient } from './client.js';
import { ConflictError, NotFoundError, ValidationError } from './errors.js';
import { Sandbox } from './sandbox.js';
import { TEST_IMAGE, needDocker, startServer, type ListeningServer } from './testing/sdk-test-support.js';

describe('SDK egress policy against a real server (gated runtime)', { timeout: 60_000 }, () => {
  let t: TestServer;
  let runtime: GatedRuntime;
  let client: CorralClient;
  before(async () => {
    runtime = new GatedRuntime();
    runtime.openAll();
    t = await startTestServer({ instanceId: `sdk-egress-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime });
    const url = await t.server.listen();
    client = new CorralClient({ apiUrl: url, apiKey: t.adminKey });
  });
  after(async () => t.close());

  it('creates with an allow list, reads and replaces the policy on the client and the Sandbox, and reads the log', async () => {
    const sandbox = await Sandbox.create(client, { image: 'busybox:latest', networkAllowlist: ['*.Example.test'] });
    assert.deepEqual([sandbox.info.networkAllowlist, sandbox.info.networkDenylist, sandbox.info.networkAccess], [['*.example.test'], null, true]);
    assert.deepEqual(await sandbox.getEgressPolicy(), { policy: { allowlist: ['*.example.test'], denylist: null }, generation: 1, applied_generation: 1, applied: true });

    const denied = await sandbox.setEgressPolicy({ deny: ['evil.test'] });
    assert.deepEqual(denied, { policy: { allowlist: null, denylist: ['evil.test'] }, generation: 2, applied_generation: 2, applied: true });
    const open = await client.setEgressPolicy(sandbox.id, { deny: [] });
    assert.deepEqual([open.policy, open.generation, open.applied], [{ allowlist: null, denylist: [] }, 3, true]);
    const none = await client.setEgressPolicy(sandbox.id, { allow: [] });
    assert.deepEqual(none.policy, { allowlist: [], denylist: null });
    assert.equal((await sandbox.refresh()).networkAccess, false);
    assert.deepEqual((await client.getEgressPolicy(sandbox.id)).generation, 4);

    const runtimeId = (await t.server.store.getSandbox(sandbox.id))?.runtimeId;
    assert.ok(runtimeId);
    runtime.egressLogs.set(runtimeId, [
      { at: '2026-01-01T00:00:00.000Z', kind: 'dns', destination: 'api.example.test', port: null, protocol: 'udp', verdict: 'allowed', answers: ['198.51.100.7'] },
      { at: '2026-01-01T00:00:01.000Z', kind: 'connect', destination: '203.0.113.9', port: 443, protocol: 'tcp', verdict: 'denied' },
    ]);
    assert.deepEqual((await sandbox.egressLog()).map((e) => [e.kind, e.destination, e.verdict]), [['dns', 'api.example.test', 'allowed'], ['connect', '203.0.113.9', 'denied']]);
    assert.deepEqual((await client.egressLog(sandbox.id, { limit: 1 })).map((e) => e.port), [443]);
    await sandbox.delete();
  });

  it('raises ValidationError naming the entry, ConflictError on an ended sandbox, NotFoundError for an unknown one', async () => {
    await assert.rejects(Sandbox.create(client, { image: 'busybox:latest', networkAllowlist: ['https://a.test'] }), (error: unknown) => {
      assert.ok(error instanceof ValidationError);
      assert.match(error.message, /network_allowlist\[0\]/);
      return true;
    });
    await assert.rejects(Sandbox.create(client, { image: 'busybox:latest', networkAllowlist: ['a.test'], networkDenylist: ['b.test'] }), ValidationError);
    const sandbox = await Sandbox.create(client, { image: 'busybox:latest' });
    await assert.rejects(sandbox.setEgressPolicy({ allow: ['a.test:443'] }), (error: unknown) => error instanceof ValidationError && /allowlist\[0\]/.test(error.message));
    await sandbox.delete();
    await assert.rejects(sandbox.setEgressPolicy({ allow: [] }), ConflictError);
    await assert.rejects(client.getEgressPolicy('nosuchsandbox0000000000000'), NotFoundError);
  });
});

describe('SDK: networkAllowlist: [] on the docker driver', { timeout: 120_000 }, () => {
  let server: ListeningServer | undefined;
  after(async () => server?.close());

  it('gives a sandbox with no default route', async (t) => {
    if (!needDocker(t)) return;
    server = await startServer({ createWaitMs: 20_000 });
    const client = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey });
    const sandbox = await Sandbox.create(client, { image: TEST_IMAGE, networkAllowlist: [] });
    try {
      assert.deepEqual([sandbox.info.networkAccess, sandbox.info.networkAllowlist], [false, []]);
      await sandbox.waitUntilRunning();
      // The driver enforces policies: the sandbox is wired (so a later policy can open it) but has no way out.
      const { stdout } = await sandbox.exec('tail -n +2 /proc/net/route');
      assert.ok(!stdout.split('\n').some((line) => line.trim().split(/\s+/)[1] === '00000000'), `no default route: ${stdout}`);
    } finally {
      await sandbox.delete();
    }
  });
});

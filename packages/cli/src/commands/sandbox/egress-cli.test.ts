import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { GatedRuntime, startTestServer, type TestServer } from '@corral/server/testing';
import { runCli } from '../../testing/spawn-cli.js';

describe('corral sandbox create --allow/--deny/--no-network, network and egress-log against a real server', { timeout: 120_000, concurrency: true }, () => {
  let t: TestServer;
  let runtime: GatedRuntime;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    runtime = new GatedRuntime();
    runtime.openAll();
    t = await startTestServer({ instanceId: `cli-egress-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime });
    env = { CORRAL_API_URL: await t.server.listen(), CORRAL_API_KEY: t.adminKey, XDG_CONFIG_HOME: '/nonexistent-corral-config' };
  });
  after(async () => t.close());

  const createJson = async (args: string[]): Promise<{ id: string; networkAccess: boolean; networkAllowlist: string[] | null; networkDenylist: string[] | null }> => {
    const created = await runCli(['sandbox', 'create', 'busybox:latest', ...args, '--output', 'json'], env);
    assert.equal(created.code, 0, created.stderr);
    return JSON.parse(created.stdout) as { id: string; networkAccess: boolean; networkAllowlist: string[] | null; networkDenylist: string[] | null };
  };

  it('create takes --allow, --deny and --no-network, and refuses contradicting flags', async () => {
    const allowed = await createJson(['--allow', 'api.example.test', '--allow', '*.Example.test']);
    assert.deepEqual([allowed.networkAllowlist, allowed.networkDenylist], [['api.example.test', '*.example.test'], null]);
    const denied = await createJson(['--deny', '203.0.113.0/24']);
    assert.deepEqual([denied.networkAllowlist, denied.networkDenylist], [null, ['203.0.113.0/24']]);
    const offline = await createJson(['--no-network']);
    assert.deepEqual([offline.networkAccess, offline.networkAllowlist], [false, []]);
    const both = await runCli(['sandbox', 'create', 'busybox:latest', '--allow', 'a.test', '--no-network'], env);
    assert.notEqual(both.code, 0);
    assert.match(both.stderr, /one of --allow, --deny or --no-network/);
    const bad = await runCli(['sandbox', 'create', 'busybox:latest', '--allow', 'https://a.test'], env);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /network_allowlist\[0\]/);
  });

  it('network shows the policy and replaces it with --allow, --deny, --open and --none', async () => {
    const { id } = await createJson(['--allow', 'a.test']);
    const shown = await runCli(['sandbox', 'network', id], env);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^POLICY\s+GENERATION\s+STATE\n/);
    assert.match(shown.stdout, /allow a\.test\s+1\s+applied/);
    const denied = await runCli(['sandbox', 'network', id, '--deny', 'evil.test', '--deny', '198.51.100.7'], env);
    assert.equal(denied.code, 0, denied.stderr);
    assert.match(denied.stdout, /deny evil\.test, 198\.51\.100\.7\s+2\s+applied/);
    const opened = await runCli(['sandbox', 'network', id, '--open', '--output', 'json'], env);
    assert.deepEqual(JSON.parse(opened.stdout), { policy: { allowlist: null, denylist: [] }, generation: 3, applied_generation: 3, applied: true });
    const closed = await runCli(['sandbox', 'network', id, '--none'], env);
    assert.match(closed.stdout, /none \(no egress\)\s+4\s+applied/);
    const runtimeId = (await t.server.store.getSandbox(id))?.runtimeId;
    assert.equal(runtime.egressPolicies.get(runtimeId ?? '')?.length, 3);
    const both = await runCli(['sandbox', 'network', id, '--open', '--deny', 'x.test'], env);
    assert.notEqual(both.code, 0);
    assert.match(both.stderr, /one of --allow, --deny, --open or --none/);
    const bad = await runCli(['sandbox', 'network', id, '--allow', 'a.test:443'], env);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /allowlist\[0\]/);
  });

  it('egress-log prints a table of time, kind, destination, port and verdict', async () => {
    const { id } = await createJson(['--allow', '*.example.test']);
    const runtimeId = (await t.server.store.getSandbox(id))?.runtimeId;
    assert.ok(runtimeId);
    const empty = await runCli(['sandbox', 'egress-log', id], env);
    assert.equal(empty.stdout, '(none)\n');
    runtime.egressLogs.set(runtimeId, [
      { at: '2026-01-01T00:00:00.000Z', kind: 'dns', destination: 'api.example.test', port: null, protocol: 'udp', verdict: 'allowed', answers: ['198.51.100.7'] },
      { at: '2026-01-01T00:00:01.000Z', kind: 'connect', destination: '203.0.113.9', port: 443, protocol: 'tcp', verdict: 'denied' },
    ]);
    const table = await runCli(['sandbox', 'egress-log', id], env);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^TIME\s+KIND\s+DESTINATION\s+PORT\s+VERDICT\s+ANSWERS$/);
    assert.match(lines[1] ?? '', /^2026-01-01T00:00:00.000Z\s+dns\s+api\.example\.test\s+-\s+allowed\s+198\.51\.100\.7$/);
    assert.match(lines[2] ?? '', /^2026-01-01T00:00:01.000Z\s+connect\s+203\.0\.113\.9\s+443\s+denied\s+-$/);
    const last = await runCli(['sandbox', 'egress-log', id, '--limit', '1', '--output', 'json'], env);
    assert.deepEqual(JSON.parse(last.stdout).entries.map((e: { destination: string }) => e.destination), ['203.0.113.9']);
    const badLimit = await runCli(['sandbox', 'egress-log', id, '--limit', '5000'], env);
    assert.notEqual(badLimit.code, 0);
  });
});

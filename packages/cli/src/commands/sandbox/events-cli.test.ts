import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PausableRuntime, startTestServer, type TestServer } from '@corral/server/testing';
import { runCli } from '../../testing/spawn-cli.js';

describe('corral sandbox events and stats against a real server', { timeout: 120_000 }, () => {
  let t: TestServer;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    const runtime = new PausableRuntime();
    runtime.openAll();
    t = await startTestServer({ instanceId: `cli-events-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000 }, {}, { runtime });
    env = { CORRAL_API_URL: await t.server.listen(), CORRAL_API_KEY: t.adminKey, XDG_CONFIG_HOME: '/nonexistent-corral-config' };
  });
  after(async () => t.close());

  it('prints the timeline as a table or JSON, and --follow streams until the sandbox has ended', async () => {
    const created = await runCli(['sandbox', 'create', 'busybox:latest', '--output', 'json'], env);
    assert.equal(created.code, 0, created.stderr);
    const { id } = JSON.parse(created.stdout) as { id: string };
    for (let i = 0; i < 300 && (await t.server.store.getSandbox(id))?.status !== 'RUNNING'; i++) await new Promise((resolve) => setTimeout(resolve, 100));

    const stats = await runCli(['sandbox', 'stats', id], env);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /^RESOURCE\s+USED\s+LIMIT\n/);
    assert.match(stats.stdout, /\ncpu\s+0\.00 s\s+1 cores\n/);
    const statsJson = JSON.parse((await runCli(['sandbox', 'stats', id, '-o', 'json'], env)).stdout) as { status: string };
    assert.equal(statsJson.status, 'RUNNING');

    const following = runCli(['sandbox', 'events', id, '--follow', '--output', 'json'], env);
    const table = await runCli(['sandbox', 'events', id], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^TIME\s+TYPE\s+ACTOR\s+DETAILS/);
    assert.match(table.stdout, /sandbox\.created/);
    assert.match(table.stdout, /sandbox\.status .*to=RUNNING reason=started/);

    assert.equal((await runCli(['sandbox', 'delete', id], env)).code, 0);
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    const lines = followed.stdout.trim().split('\n').map((line) => JSON.parse(line) as { type: string; data: Record<string, unknown> });
    assert.deepEqual(lines.at(-1)?.data.to, 'TERMINATED');

    const json = await runCli(['sandbox', 'events', id, '--limit', '1', '--output', 'json'], env);
    const page = JSON.parse(json.stdout) as { events: unknown[]; hasMore: boolean };
    assert.equal(page.events.length, 1);
    assert.equal(page.hasMore, true);
    const bad = await runCli(['sandbox', 'events', id, '--limit', 'x'], env);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--limit expects a whole number/);
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ListeningServer, startServer } from '../testing/cli-test-server.js';
import { runCli } from '../testing/spawn-cli.js';

interface QuotaJson {
  scope: string;
  subject_id: string;
  limits: Record<string, number | null>;
  overrides: Record<string, number | null>;
  usage: Record<string, number>;
}

/** The table's rows as `resource → [used, limit, override]`. */
function tableRows(stdout: string): Record<string, string[]> {
  const [header, ...rows] = stdout.trim().split('\n');
  assert.match(header ?? '', /^RESOURCE\s+USED\s+LIMIT\s+OVERRIDE$/);
  return Object.fromEntries(rows.map((line) => line.trim().split(/\s+/)).map(([resource, ...rest]) => [resource ?? '', rest]));
}

// Runtime `none`: sandboxes stay PENDING, which counts as active, so quotas bite without containers.
describe('corral users|teams quota against a real server', { concurrency: true, timeout: 120_000 }, () => {
  let server: ListeningServer;
  let adminEnv: NodeJS.ProcessEnv;
  const home = mkdtempSync(join(tmpdir(), 'corral-cli-quota-'));
  const envFor = (key: string): NodeJS.ProcessEnv => ({ CORRAL_API_URL: server.url, CORRAL_API_KEY: key, XDG_CONFIG_HOME: join(home, 'config') });
  before(async () => {
    server = await startServer({ runtime: 'none', quotaSandboxes: 50, quotaCpuCores: 64, quotaMemoryGb: 256, quotaDiskGb: 2000 });
    adminEnv = envFor(server.t.adminKey);
  });
  after(async () => {
    await server?.close();
    rmSync(home, { recursive: true, force: true });
  });

  it('shows a user quota, changes only the resources named, accepts unlimited and default, resets', async () => {
    const user = await server.t.createUser('cli-quota');
    const shown = await runCli(['users', 'quota', user.id], adminEnv);
    assert.equal(shown.code, 0, shown.stderr);
    assert.deepEqual(tableRows(shown.stdout), {
      sandboxes: ['0', '50', 'default'],
      'cpu-cores': ['0', '64', 'default'],
      'memory-gb': ['0', '256', 'default'],
      'disk-gb': ['0', '2000', 'default'],
    });

    const set = await runCli(['users', 'quota', user.id, '--sandboxes', '3', '--cpu-cores', '2.5', '--disk-gb', 'unlimited'], adminEnv);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stderr, new RegExp(`Set the quota of user ${user.id}`));
    assert.deepEqual(tableRows(set.stdout), {
      sandboxes: ['0', '3', '3'],
      'cpu-cores': ['0', '2.5', '2.5'],
      'memory-gb': ['0', '256', 'default'],
      'disk-gb': ['0', 'unlimited', 'unlimited'],
    });

    // Flags not given keep their override; `default` drops one; -1 is unlimited too.
    const merged = await runCli(['--output', 'json', 'users', 'quota', user.id, '--cpu-cores', 'default', '--memory-gb', '-1'], adminEnv);
    assert.equal(merged.code, 0, merged.stderr);
    const quota = JSON.parse(merged.stdout) as QuotaJson;
    assert.equal(quota.scope, 'user');
    assert.equal(quota.subject_id, user.id);
    assert.deepEqual(quota.overrides, { sandboxes: 3, cpu_cores: null, memory_gb: -1, disk_gb: -1 });
    assert.deepEqual(quota.limits, { sandboxes: 3, cpu_cores: 64, memory_gb: null, disk_gb: null });

    // --reset with a flag keeps only that override.
    const replaced = await runCli(['-o', 'json', 'users', 'quota', user.id, '--reset', '--disk-gb', '10'], adminEnv);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.deepEqual((JSON.parse(replaced.stdout) as QuotaJson).overrides, { sandboxes: null, cpu_cores: null, memory_gb: null, disk_gb: 10 });

    const reset = await runCli(['-o', 'json', 'users', 'quota', user.id, '--reset'], adminEnv);
    assert.equal(reset.code, 0, reset.stderr);
    assert.match(reset.stderr, /Reset the quota/);
    assert.deepEqual((JSON.parse(reset.stdout) as QuotaJson).overrides, { sandboxes: null, cpu_cores: null, memory_gb: null, disk_gb: null });
  });

  it('refuses bad values before calling the server, and reports server refusals with exit 2', async () => {
    const user = await server.t.createUser('cli-quota-bad');
    for (const [flag, value] of [
      ['--sandboxes', '1.5'],
      ['--sandboxes', 'lots'],
      ['--cpu-cores', '-2'],
      ['--memory-gb', ''],
      ['--disk-gb', '0x10'],
    ] as const) {
      const bad = await runCli(['users', 'quota', user.id, flag, value], adminEnv);
      assert.notEqual(bad.code, 0, `${flag} ${value}`);
      assert.match(bad.stderr, new RegExp(`option '${flag} <n>' argument '${value}' is invalid.*unlimited`), bad.stderr);
    }
    const untouched = await server.t.request('GET', `/api/v1/users/${user.id}/quota`);
    assert.deepEqual(untouched.json<QuotaJson>().overrides, { sandboxes: null, cpu_cores: null, memory_gb: null, disk_gb: null });

    const tooBig = await runCli(['users', 'quota', user.id, '--disk-gb', '99999999999'], adminEnv);
    assert.equal(tooBig.code, 2);
    assert.match(tooBig.stderr, /disk_gb/);
    const unknown = await runCli(['teams', 'quota', 'no-such-team'], adminEnv);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Team no-such-team not found/);
  });

  it('a user reads their own quota but may not change it', async () => {
    const user = await server.t.createUser('cli-quota-self');
    const env = envFor(user.key);
    const own = await runCli(['-o', 'json', 'users', 'quota', user.id], env);
    assert.equal(own.code, 0, own.stderr);
    assert.equal((JSON.parse(own.stdout) as QuotaJson).limits.sandboxes, 50);
    const raise = await runCli(['users', 'quota', user.id, '--sandboxes', 'unlimited'], env);
    assert.equal(raise.code, 2);
    assert.match(raise.stderr, /needs a server administrator key/);
    const reset = await runCli(['users', 'quota', user.id, '--reset'], env);
    assert.equal(reset.code, 2);
  });

  it('team quota: set by an admin, read by a member, and a create past it says what to do', async () => {
    const created = await server.t.request('POST', '/api/v1/teams', { body: { name: 'cli-quota-team' } });
    const team = created.json<{ id: string }>();
    const member = await server.t.createUser('cli-quota-member');
    await server.t.request('PUT', `/api/v1/teams/${team.id}/members/${member.id}`, { body: { role: 'member' } });
    const env = envFor(member.key);

    const set = await runCli(['teams', 'quota', team.id, '--sandboxes', '1'], adminEnv);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stderr, new RegExp(`Set the quota of team ${team.id}`));
    assert.deepEqual(tableRows(set.stdout).sandboxes, ['0', '1', '1']);
    assert.deepEqual(tableRows(set.stdout)['cpu-cores'], ['0', 'unlimited', 'default']);

    const first = await runCli(['sandbox', 'create', 'busybox', '--team-id', team.id], env);
    assert.equal(first.code, 0, first.stderr);
    const read = await runCli(['teams', 'quota', team.id], env);
    assert.equal(read.code, 0, read.stderr);
    assert.deepEqual(tableRows(read.stdout).sandboxes, ['1', '1', '1']);

    const second = await runCli(['sandbox', 'create', 'busybox', '--team-id', team.id], env);
    assert.equal(second.code, 2);
    assert.match(second.stderr, new RegExp(`Quota exceeded: team ${team.id} may run at most 1 sandbox`));
    assert.match(second.stderr, /corral teams quota <team-id>/);

    const reset = await runCli(['teams', 'quota', team.id, '--reset'], adminEnv);
    assert.equal(reset.code, 0, reset.stderr);
    assert.deepEqual(tableRows(reset.stdout).sandboxes, ['1', 'unlimited', 'default']);
    await server.t.request('DELETE', `/api/v1/sandbox/${first.stdout.trim()}`, { key: member.key });
  });
});

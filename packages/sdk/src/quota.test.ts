import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CorralClient } from './client.js';
import { ForbiddenError, NotFoundError, QuotaExceededError, ValidationError } from './errors.js';
import { QUOTA_UNLIMITED } from './resources/admin-api.js';
import { type ListeningServer, startServer } from './testing/sdk-test-support.js';

// Runtime `none`: sandboxes stay PENDING, which counts as active, so quotas bite without containers.
describe('SDK quotas against a real server', { timeout: 60_000 }, () => {
  let server: ListeningServer;
  let admin: CorralClient;
  before(async () => {
    server = await startServer({ runtime: 'none', quotaSandboxes: 50, quotaCpuCores: 64, quotaMemoryGb: 256, quotaDiskGb: 2000 });
    admin = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey });
  });
  after(async () => server?.close());

  const clientOf = (key: string): CorralClient => new CorralClient({ apiUrl: server.url, apiKey: key });

  it('an admin sets, reads and resets a user quota; the user reads their own but may not change it', async () => {
    const user = await server.t.createUser('quota-reader');
    const own = clientOf(user.key);

    const fresh = await own.users.quota(user.id);
    assert.deepEqual(fresh, {
      scope: 'user',
      subject_id: user.id,
      limits: { sandboxes: 50, cpu_cores: 64, memory_gb: 256, disk_gb: 2000 },
      overrides: { sandboxes: null, cpu_cores: null, memory_gb: null, disk_gb: null },
      usage: { sandboxes: 0, cpu_cores: 0, memory_gb: 0, disk_gb: 0 },
    });

    const set = await admin.users.setQuota(user.id, { sandboxes: 3, memory_gb: QUOTA_UNLIMITED, disk_gb: 12.5 });
    assert.deepEqual(set.limits, { sandboxes: 3, cpu_cores: 64, memory_gb: null, disk_gb: 12.5 });
    assert.deepEqual(set.overrides, { sandboxes: 3, cpu_cores: null, memory_gb: -1, disk_gb: 12.5 });
    assert.deepEqual((await own.users.quota(user.id)).limits, set.limits);

    // A PUT replaces: fields left out go back to the server default.
    const replaced = await admin.users.setQuota(user.id, { cpu_cores: 2 });
    assert.deepEqual(replaced.overrides, { sandboxes: null, cpu_cores: 2, memory_gb: null, disk_gb: null });
    assert.deepEqual(replaced.limits, { sandboxes: 50, cpu_cores: 2, memory_gb: 256, disk_gb: 2000 });

    await assert.rejects(own.users.setQuota(user.id, { sandboxes: QUOTA_UNLIMITED }), (error: unknown) => {
      assert.ok(error instanceof ForbiddenError);
      assert.ok(!(error instanceof QuotaExceededError));
      assert.equal(error.status, 403);
      assert.match(error.message, /server administrator/);
      return true;
    });
    await assert.rejects(own.users.resetQuota(user.id), ForbiddenError);

    const reset = await admin.users.resetQuota(user.id);
    assert.deepEqual(reset.overrides, { sandboxes: null, cpu_cores: null, memory_gb: null, disk_gb: null });
    assert.deepEqual(reset.limits, fresh.limits);
  });

  it('bad values are a ValidationError naming the field; unknown or foreign subjects are NotFoundError', async () => {
    const user = await server.t.createUser('quota-bad');
    await assert.rejects(admin.users.setQuota(user.id, { sandboxes: -2 }), (error: unknown) => {
      assert.ok(error instanceof ValidationError);
      assert.equal(error.status, 422);
      assert.ok(error.fields.some((f) => f.param.includes('sandboxes')), JSON.stringify(error.fields));
      return true;
    });
    await assert.rejects(admin.users.setQuota(user.id, { sandboxes: 1.5 }), ValidationError);
    await assert.rejects(admin.users.quota('no-such-user'), NotFoundError);
    await assert.rejects(admin.teams.setQuota('no-such-team', { sandboxes: 1 }), NotFoundError);
    const other = await server.t.createUser('quota-other');
    await assert.rejects(clientOf(other.key).users.quota(user.id), NotFoundError);
  });

  it('a create past the user quota is a QuotaExceededError that names the limit and where to look', async () => {
    const user = await server.t.createUser('quota-creator');
    const own = clientOf(user.key);
    await admin.users.setQuota(user.id, { sandboxes: 1 });
    const first = await own.sandboxes.create({ name: 'q1', docker_image: 'busybox' });
    const usage = (await own.users.quota(user.id)).usage;
    assert.equal(usage.sandboxes, 1);
    assert.equal(usage.cpu_cores, first.cpuCores);

    await assert.rejects(own.sandboxes.create({ name: 'q2', docker_image: 'busybox' }), (error: unknown) => {
      assert.ok(error instanceof QuotaExceededError, String(error));
      assert.ok(error instanceof ForbiddenError, 'still a ForbiddenError for callers that catch those');
      assert.equal(error.status, 403);
      assert.equal(error.code, 'QUOTA_EXCEEDED');
      assert.match(error.message, /at most 1 sandbox at once \(1 active\)/);
      assert.match(error.message, /corral users quota <user-id>/);
      assert.doesNotMatch(error.message, /Use a key whose user may do this/);
      return true;
    });

    await own.sandboxes.delete(first.id);
    const again = await own.sandboxes.create({ name: 'q3', docker_image: 'busybox' });
    await own.sandboxes.delete(again.id);
  });

  it('team quotas: members read them, a create in the team past its limit names the team', async () => {
    const team = await admin.teams.create('quota-team');
    const member = await server.t.createUser('quota-member');
    await admin.teams.setMember(team.id, member.id, 'member');
    const own = clientOf(member.key);

    const set = await admin.teams.setQuota(team.id, { sandboxes: 1, cpu_cores: QUOTA_UNLIMITED });
    assert.equal(set.scope, 'team');
    assert.deepEqual(set.limits, { sandboxes: 1, cpu_cores: null, memory_gb: null, disk_gb: null });
    assert.deepEqual((await own.teams.quota(team.id)).overrides, { sandboxes: 1, cpu_cores: -1, memory_gb: null, disk_gb: null });

    const first = await own.sandboxes.create({ name: 't1', docker_image: 'busybox', team_id: team.id });
    assert.equal((await own.teams.quota(team.id)).usage.sandboxes, 1);
    await assert.rejects(own.sandboxes.create({ name: 't2', docker_image: 'busybox', team_id: team.id }), (error: unknown) => {
      assert.ok(error instanceof QuotaExceededError, String(error));
      assert.match(error.message, new RegExp(`team ${team.id} may run at most 1 sandbox`));
      return true;
    });
    // Outside the team only the user's own quota applies.
    const solo = await own.sandboxes.create({ name: 't3', docker_image: 'busybox' });

    const reset = await admin.teams.resetQuota(team.id);
    assert.deepEqual(reset.limits, { sandboxes: null, cpu_cores: null, memory_gb: null, disk_gb: null });
    const second = await own.sandboxes.create({ name: 't4', docker_image: 'busybox', team_id: team.id });
    for (const s of [first, solo, second]) await own.sandboxes.delete(s.id);
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestServer, startTestServer } from '../testing/test-server.js';

interface QuotaView {
  limits: { sandboxes: number | null; cpu_cores: number | null; memory_gb: number | null; disk_gb: number | null };
  usage: { sandboxes: number; cpu_cores: number; memory_gb: number; disk_gb: number };
}

const small = { cpu_cores: 1, memory_gb: 1, disk_size_gb: 1 };

describe('quotas per user and per team', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({}, { CORRAL_QUOTA_SANDBOXES: '3', CORRAL_QUOTA_CPU_CORES: '8', CORRAL_QUOTA_MEMORY_GB: '16', CORRAL_QUOTA_DISK_GB: '40' });
  });
  after(async () => t.close());

  const create = (key: string, body: Record<string, unknown> = {}) =>
    t.request('POST', '/api/v1/sandbox', { key, body: { name: 'q', docker_image: 'busybox', ...small, ...body } });

  const assertQuotaError = (response: { statusCode: number; json: <T>() => T }, mentions: RegExp): void => {
    assert.equal(response.statusCode, 403);
    const body = response.json<{ detail: string; code: string }>();
    assert.equal(body.code, 'QUOTA_EXCEEDED');
    assert.match(body.detail, mentions);
  };

  it('refuses the (N+1)th active sandbox with 403 QUOTA_EXCEEDED; ending one frees a slot', async () => {
    const user = await t.createUser('quota-count');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const created = await create(user.key);
      assert.equal(created.statusCode, 201, created.body);
      ids.push(created.json<{ id: string }>().id);
    }
    assertQuotaError(await create(user.key), /sandboxes/);
    assert.equal((await t.request('DELETE', `/api/v1/sandbox/${ids[0]}`, { key: user.key })).statusCode, 200);
    assert.equal((await create(user.key)).statusCode, 201, 'an ended sandbox no longer counts');
  });

  it('refuses too much CPU, memory or disk in total', async () => {
    const user = await t.createUser('quota-resources');
    assert.equal((await create(user.key, { cpu_cores: 6 })).statusCode, 201);
    assertQuotaError(await create(user.key, { cpu_cores: 3 }), /cpu/i);
    assertQuotaError(await create(user.key, { memory_gb: 16 }), /memory/i);
    assertQuotaError(await create(user.key, { disk_size_gb: 40 }), /disk/i);
    assert.equal((await create(user.key, { cpu_cores: 2 })).statusCode, 201, 'exactly at the limit is allowed');
  });

  it('per-user overrides set by an admin; users read their own quota but cannot change it', async () => {
    const user = await t.createUser('quota-override');
    const set = await t.request('PUT', `/api/v1/users/${user.id}/quota`, { body: { sandboxes: 1, cpu_cores: null } });
    assert.equal(set.statusCode, 200, set.body);
    assert.equal(set.json<QuotaView>().limits.sandboxes, 1);
    assert.equal(set.json<QuotaView>().limits.cpu_cores, 8, 'null keeps the server default');
    assert.equal((await t.request('PUT', `/api/v1/users/${user.id}/quota`, { key: user.key, body: { sandboxes: 100 } })).statusCode, 403);
    assert.equal((await create(user.key)).statusCode, 201);
    assertQuotaError(await create(user.key), /1 sandbox/);
    const seen = await t.request('GET', `/api/v1/users/${user.id}/quota`, { key: user.key });
    assert.equal(seen.statusCode, 200, seen.body);
    assert.deepEqual(seen.json<QuotaView>().usage, { sandboxes: 1, cpu_cores: 1, memory_gb: 1, disk_gb: 1 });
    const bad = await t.request('PUT', `/api/v1/users/${user.id}/quota`, { body: { sandboxes: -5 } });
    assert.equal(bad.statusCode, 422);
    assert.equal((await t.request('PUT', '/api/v1/users/nobody/quota', { body: { sandboxes: 1 } })).statusCode, 404);
    const cleared = await t.request('DELETE', `/api/v1/users/${user.id}/quota`);
    assert.equal(cleared.statusCode, 200);
    assert.equal(cleared.json<QuotaView>().limits.sandboxes, 3);
  });

  it("a team's quota covers every member's sandboxes in the team", async () => {
    const a = await t.createUser('team-quota-a');
    const b = await t.createUser('team-quota-b');
    const team = (await t.request('POST', '/api/v1/teams', { body: { name: 'quota-team' } })).json<{ id: string }>();
    for (const u of [a, b]) await t.request('PUT', `/api/v1/teams/${team.id}/members/${u.id}`, { body: { role: 'member' } });
    assert.equal((await t.request('PUT', `/api/v1/teams/${team.id}/quota`, { body: { sandboxes: 2, memory_gb: 3 } })).statusCode, 200);
    assert.equal((await create(a.key, { team_id: team.id, memory_gb: 2 })).statusCode, 201);
    assertQuotaError(await create(b.key, { team_id: team.id, memory_gb: 2 }), /team/);
    assert.equal((await create(b.key, { team_id: team.id, memory_gb: 1 })).statusCode, 201);
    assertQuotaError(await create(b.key, { team_id: team.id, memory_gb: 0.5 }), /team/);
    assert.equal((await create(b.key, { memory_gb: 1 })).statusCode, 201, 'outside the team only the user quota applies');
    const view = await t.request('GET', `/api/v1/teams/${team.id}/quota`, { key: a.key });
    assert.equal(view.statusCode, 200, view.body);
    assert.equal(view.json<QuotaView>().usage.sandboxes, 2);
  });

  it('50 concurrent creates do not overshoot the quota', async () => {
    const user = await t.createUser('quota-race');
    assert.equal((await t.request('PUT', `/api/v1/users/${user.id}/quota`, { body: { sandboxes: 10, cpu_cores: -1, memory_gb: -1, disk_gb: -1 } })).statusCode, 200);
    const results = await Promise.all(Array.from({ length: 50 }, () => create(user.key)));
    const codes = results.map((r) => r.statusCode);
    assert.equal(codes.filter((c) => c === 201).length, 10, codes.join(','));
    assert.equal(codes.filter((c) => c === 403).length, 40);
    const listed = await t.request('GET', '/api/v1/sandbox?is_active=true', { key: user.key });
    assert.equal(listed.json<{ total: number }>().total, 10);
  });

  it('an idempotent retry of a create is not refused by the quota', async () => {
    const user = await t.createUser('quota-idem');
    assert.equal((await t.request('PUT', `/api/v1/users/${user.id}/quota`, { body: { sandboxes: 1 } })).statusCode, 200);
    const first = await create(user.key, { idempotency_key: 'once' });
    assert.equal(first.statusCode, 201, first.body);
    const again = await create(user.key, { idempotency_key: 'once' });
    assert.ok(again.statusCode < 300, again.body);
    assert.equal(again.json<{ id: string }>().id, first.json<{ id: string }>().id);
  });

  it('server admins have no default quota', async () => {
    for (let i = 0; i < 4; i++) assert.equal((await t.request('POST', '/api/v1/sandbox', { body: { name: 'adm', docker_image: 'busybox', ...small } })).statusCode, 201);
  });
});

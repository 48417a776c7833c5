import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestServer, startTestServer } from '../testing/test-server.js';

describe('tenancy, keys and auth', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(async () => t.close());

  it('answers 401 for a missing, malformed, unknown or revoked key', async () => {
    assert.equal((await t.request('GET', '/api/v1/sandbox', { key: null })).statusCode, 401);
    assert.equal((await t.request('GET', '/api/v1/sandbox', { key: null, headers: { authorization: 'Basic abc' } })).statusCode, 401);
    assert.equal((await t.request('GET', '/api/v1/sandbox', { key: 'corral_nope' })).statusCode, 401);
    const user = await t.createUser('revokee');
    assert.equal((await t.request('GET', '/api/v1/sandbox', { key: user.key })).statusCode, 200);
    const keys = (await t.request('GET', '/api/v1/keys', { key: user.key })).json<{ keys: Array<{ id: string; prefix: string }> }>().keys;
    assert.equal(keys.length, 1);
    assert.ok(user.key.startsWith(keys[0]?.prefix ?? 'x'));
    const revoked = await t.request('DELETE', `/api/v1/keys/${keys[0]?.id}`, { key: user.key });
    assert.equal(revoked.statusCode, 200);
    const after = await t.request('GET', '/api/v1/sandbox', { key: user.key });
    assert.equal(after.statusCode, 401);
    assert.equal(after.json<{ code: string }>().code, 'UNAUTHORIZED');
  });

  it('stores keys only as hashes', async () => {
    const user = await t.createUser('hashed');
    const rows = await t.server.store.listApiKeys(user.id);
    assert.equal(rows.length, 1);
    assert.notEqual(rows[0]?.keyHash, user.key);
    assert.match(rows[0]?.keyHash ?? '', /^[0-9a-f]{64}$/);
    const listing = await t.request('GET', `/api/v1/keys?user_id=${user.id}`);
    assert.ok(!listing.body.includes(user.key), 'a listing never shows the secret');
  });

  it("hides other users' sandboxes behind 404 on every route", async () => {
    const alice = await t.createUser('alice');
    const bob = await t.createUser('bob');
    const id = (await t.request('POST', '/api/v1/sandbox', { key: alice.key, body: { name: 'a', docker_image: 'busybox' } })).json<{ id: string }>().id;
    const routes: Array<['GET' | 'POST' | 'PATCH' | 'DELETE', string, unknown]> = [
      ['GET', `/api/v1/sandbox/${id}`, undefined],
      ['PATCH', `/api/v1/sandbox/${id}`, { labels: ['x'] }],
      ['DELETE', `/api/v1/sandbox/${id}`, undefined],
      ['GET', `/api/v1/sandbox/${id}/logs`, undefined],
      ['GET', `/api/v1/sandbox/${id}/error-context`, undefined],
      ['POST', `/api/v1/sandbox/${id}/auth`, undefined],
      ['GET', `/api/v1/sandbox/${id}/expose`, undefined],
    ];
    for (const [method, url, body] of routes) {
      const response = await t.request(method, url, { key: bob.key, ...(body !== undefined ? { body } : {}) });
      assert.equal(response.statusCode, 404, `${method} ${url}`);
      assert.equal(response.json<{ detail: string }>().detail, `Sandbox ${id} not found`);
    }
    const batch = await t.request('POST', '/api/v1/sandbox/status:batchGet', { key: bob.key, body: { sandbox_ids: [id] } });
    assert.deepEqual(batch.json<{ statuses: unknown[] }>().statuses, []);
    const list = await t.request('GET', '/api/v1/sandbox', { key: bob.key });
    assert.equal(list.json<{ total: number }>().total, 0);
    assert.equal((await t.request('GET', `/api/v1/sandbox/${id}`, { key: alice.key })).json<{ status: string }>().status, 'PENDING');
  });

  it('lets team admins, and only them, see and end members\' team sandboxes', async () => {
    const lead = await t.createUser('lead');
    const dev = await t.createUser('dev');
    const peer = await t.createUser('peer');
    const team = (await t.request('POST', '/api/v1/teams', { body: { name: 'research' } })).json<{ id: string }>();
    for (const [user, role] of [[lead, 'admin'], [dev, 'member'], [peer, 'member']] as const) {
      const r = await t.request('PUT', `/api/v1/teams/${team.id}/members/${user.id}`, { body: { role } });
      assert.equal(r.statusCode, 200, r.body);
    }
    const created = await t.request('POST', '/api/v1/sandbox', { key: dev.key, body: { name: 't', docker_image: 'busybox', team_id: team.id, labels: ['team-run'] } });
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json<{ id: string; teamId: string }>().id;
    assert.equal(created.json<{ teamId: string }>().teamId, team.id);

    assert.equal((await t.request('GET', `/api/v1/sandbox/${id}`, { key: lead.key })).statusCode, 200, 'team admin sees it');
    assert.equal((await t.request('GET', `/api/v1/sandbox/${id}`, { key: peer.key })).statusCode, 404, 'a plain member does not');

    const asLead = await t.request('GET', `/api/v1/sandbox?team_id=${team.id}&user_id=${dev.id}`, { key: lead.key });
    assert.deepEqual(asLead.json<{ sandboxes: Array<{ id: string }> }>().sandboxes.map((s) => s.id), [id]);
    const asPeer = await t.request('GET', `/api/v1/sandbox?team_id=${team.id}&user_id=${dev.id}`, { key: peer.key });
    assert.equal(asPeer.statusCode, 403);
    const notMember = await t.createUser('outsider');
    assert.equal((await t.request('GET', `/api/v1/sandbox?team_id=${team.id}`, { key: notMember.key })).statusCode, 403);

    const peerBulk = await t.request('DELETE', '/api/v1/sandbox', { key: peer.key, body: { labels: ['team-run'], team_id: team.id, all_users: true } });
    assert.equal(peerBulk.statusCode, 403);
    const leadBulk = await t.request('DELETE', '/api/v1/sandbox', { key: lead.key, body: { labels: ['team-run'], team_id: team.id, all_users: true } });
    assert.equal(leadBulk.statusCode, 200, leadBulk.body);
    assert.deepEqual(leadBulk.json<{ succeeded: string[] }>().succeeded, [id]);
  });

  it('keeps administration to admins', async () => {
    const user = await t.createUser('plain');
    assert.equal((await t.request('GET', '/api/v1/users', { key: user.key })).statusCode, 403);
    assert.equal((await t.request('POST', '/api/v1/teams', { key: user.key, body: { name: 'mine' } })).statusCode, 403);
    assert.equal((await t.request('POST', '/api/v1/keys', { key: user.key, body: { user_id: 'someone-else' } })).statusCode, 403);
    const own = await t.request('POST', '/api/v1/keys', { key: user.key, body: { name: 'second' } });
    assert.equal(own.statusCode, 201);
    assert.equal((await t.request('GET', '/api/v1/me', { key: own.json<{ key: string }>().key })).json<{ user: { name: string } }>().user.name, 'plain');
    assert.equal((await t.request('POST', '/api/v1/users', { body: { name: 'plain' } })).statusCode, 409, 'duplicate user name');
    assert.equal((await t.request('POST', '/api/v1/users', { body: { name: 'bad name!' } })).statusCode, 422);
  });

  it('removes access when a user is deleted', async () => {
    const user = await t.createUser('leaver');
    assert.equal((await t.request('GET', '/api/v1/me', { key: user.key })).statusCode, 200);
    assert.equal((await t.request('DELETE', `/api/v1/users/${user.id}`)).statusCode, 200);
    assert.equal((await t.request('GET', '/api/v1/me', { key: user.key })).statusCode, 401);
  });
});

describe('rate limits', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ rateLimits: true });
  });
  after(async () => t.close());

  it('answers 429 with Retry-After past the per-sandbox limit, per sandbox', async () => {
    const make = async (): Promise<string> =>
      (await t.request('POST', '/api/v1/sandbox', { body: { name: 'rl', docker_image: 'busybox' } })).json<{ id: string }>().id;
    const a = await make();
    const b = await make();
    for (let i = 0; i < 20; i += 1) {
      const r = await t.request('POST', `/api/v1/sandbox/${a}/ssh-session`, { body: {} });
      assert.notEqual(r.statusCode, 429, `request ${i + 1} of 20 was limited`);
    }
    const limited = await t.request('POST', `/api/v1/sandbox/${a}/ssh-session`, { body: {} });
    assert.equal(limited.statusCode, 429);
    assert.equal(limited.json<{ code: string }>().code, 'RATE_LIMITED');
    assert.match(limited.json<{ detail: string }>().detail, /Too Many Requests/);
    const retryAfter = Number(limited.headers['retry-after']);
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    const other = await t.request('POST', `/api/v1/sandbox/${b}/ssh-session`, { body: {} });
    assert.notEqual(other.statusCode, 429, 'another sandbox has its own budget');
  });

  it('counts per key', async () => {
    const user = await t.createUser('bulk-limited');
    for (let i = 0; i < 50; i += 1) {
      const r = await t.request('DELETE', '/api/v1/sandbox', { key: user.key, body: { sandbox_ids: ['x'] } });
      assert.equal(r.statusCode, 200);
    }
    assert.equal((await t.request('DELETE', '/api/v1/sandbox', { key: user.key, body: { sandbox_ids: ['x'] } })).statusCode, 429);
    assert.equal((await t.request('DELETE', '/api/v1/sandbox', { body: { sandbox_ids: ['x'] } })).statusCode, 200, 'the admin key is unaffected');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { eventually, hostRequest } from '../network/network-test-support.js';
import { type ListeningTestServer, type TestServer, startListeningServer, startTestServer } from '../testing/test-server.js';

/** A gateway call through the in-process app; with runtime `none` a sandbox the token may use answers 409 (still PENDING). */
async function gatewayStatus(t: TestServer, auth: { token: string; user_ns: string; job_id: string }): Promise<number> {
  const response = await t.server.app.inject({
    method: 'POST',
    url: `/gateway/${auth.user_ns}/${auth.job_id}/exec`,
    headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ command: 'true', timeout: 10 }),
  });
  return response.statusCode;
}

async function createSandbox(t: TestServer, key: string, body: Record<string, unknown> = {}): Promise<string> {
  const created = await t.request('POST', '/api/v1/sandbox', { key, body: { name: 'acc', docker_image: 'busybox', ...body } });
  assert.equal(created.statusCode, 201, created.body);
  return created.json<{ id: string }>().id;
}

async function gatewayAuth(t: TestServer, key: string, id: string): Promise<{ token: string; user_ns: string; job_id: string }> {
  const auth = await t.request('POST', `/api/v1/sandbox/${id}/auth`, { key });
  assert.equal(auth.statusCode, 200, auth.body);
  return auth.json();
}

async function newKey(t: TestServer, userId: string): Promise<{ id: string; key: string }> {
  const created = await t.request('POST', '/api/v1/keys', { body: { user_id: userId, name: 'extra' } });
  assert.equal(created.statusCode, 201, created.body);
  return created.json();
}

describe('access that is taken away is gone', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(async () => t.close());

  it("a revoked key's gateway token is refused within 2 s; the user's other keys' tokens keep working", async () => {
    const user = await t.createUser('gw-revokee');
    const second = await newKey(t, user.id);
    const id = await createSandbox(t, user.key);
    const viaFirst = await gatewayAuth(t, user.key, id);
    const viaSecond = await gatewayAuth(t, second.key, id);
    assert.equal(await gatewayStatus(t, viaSecond), 409, 'the token is accepted (the sandbox is only not ready)');
    assert.equal((await t.request('DELETE', `/api/v1/keys/${second.id}`, { key: user.key })).statusCode, 200);
    const revokedAt = Date.now();
    await eventually(async () => (await gatewayStatus(t, viaSecond)) === 401, 2_000, 'the revoked key token to be refused');
    assert.ok(Date.now() - revokedAt <= 2_000);
    assert.equal(await gatewayStatus(t, viaFirst), 409, 'a token of a key that still stands keeps working');
  });

  it("a member removed from a team loses tokens for the team's sandboxes they do not own", async () => {
    const owner = await t.createUser('team-owner');
    const lead = await t.createUser('team-lead');
    const team = (await t.request('POST', '/api/v1/teams', { body: { name: 'revocation-team' } })).json<{ id: string }>();
    assert.equal((await t.request('PUT', `/api/v1/teams/${team.id}/members/${owner.id}`, { body: { role: 'member' } })).statusCode, 200);
    assert.equal((await t.request('PUT', `/api/v1/teams/${team.id}/members/${lead.id}`, { body: { role: 'admin' } })).statusCode, 200);
    const id = await createSandbox(t, owner.key, { team_id: team.id });
    const ownToken = await gatewayAuth(t, owner.key, id);
    const leadToken = await gatewayAuth(t, lead.key, id);
    assert.equal(await gatewayStatus(t, leadToken), 409);
    assert.equal((await t.request('DELETE', `/api/v1/teams/${team.id}/members/${lead.id}`)).statusCode, 200);
    await eventually(async () => (await gatewayStatus(t, leadToken)) === 401, 2_000, "the removed member's token to be refused");
    assert.equal(await gatewayStatus(t, ownToken), 409, "the owner's token is unaffected");
  });

  it("deleting a user terminates their sandboxes and refuses their tokens", async () => {
    const user = await t.createUser('doomed');
    const first = await createSandbox(t, user.key);
    const second = await createSandbox(t, user.key);
    const token = await gatewayAuth(t, user.key, first);
    assert.equal((await t.request('DELETE', `/api/v1/users/${user.id}`)).statusCode, 200);
    for (const id of [first, second]) {
      const row = await t.server.store.getSandbox(id);
      assert.equal(row?.status, 'TERMINATED', `sandbox ${id} ends with its owner`);
      assert.equal(row?.terminationReason, 'owner_deleted');
    }
    assert.equal(await gatewayStatus(t, token), 401);
  });

  it("a server admin terminates another user's sandbox; other users still cannot", async () => {
    const user = await t.createUser('victim');
    const other = await t.createUser('bystander');
    const id = await createSandbox(t, user.key);
    assert.equal((await t.request('DELETE', `/api/v1/sandbox/${id}`, { key: other.key })).statusCode, 404);
    const deleted = await t.request('DELETE', `/api/v1/sandbox/${id}`);
    assert.equal(deleted.statusCode, 200, deleted.body);
    assert.equal((await t.server.store.getSandbox(id))?.status, 'TERMINATED');
    // Admins terminate; they do not read other users' sandboxes.
    assert.equal((await t.request('GET', `/api/v1/sandbox/${id}`)).statusCode, 404);
  });
});

describe('rate limits are per user, not per key', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ rateLimits: true });
  });
  after(async () => t.close());

  it('two keys of one user share one limit', async () => {
    const user = await t.createUser('two-keys');
    const second = await newKey(t, user.id);
    const bulk = (key: string) => t.request('DELETE', '/api/v1/sandbox', { key, body: { sandbox_ids: ['nope'] } });
    // sandbox.bulkDelete allows 50 per 60 s.
    for (let i = 0; i < 25; i++) assert.equal((await bulk(user.key)).statusCode, 200);
    for (let i = 0; i < 25; i++) assert.equal((await bulk(second.key)).statusCode, 200);
    assert.equal((await bulk(second.key)).statusCode, 429, 'the 51st request of the user is limited, whichever key sends it');
    assert.equal((await bulk(user.key)).statusCode, 429);
    const other = await t.createUser('someone-else');
    assert.equal((await bulk(other.key)).statusCode, 200, 'another user has their own limit');
  });
});

describe('revocation reaches exposures and tunnels (listening server)', () => {
  let s: ListeningTestServer;
  before(async () => {
    s = await startListeningServer('access', { runtime: 'none' });
  });
  after(async () => s.close());

  it("a deleted user's exposures stop answering", async () => {
    const user = await s.t.createUser('exposer');
    const id = await createSandbox(s.t, user.key);
    const exposed = await s.t.request('POST', `/api/v1/sandbox/${id}/expose`, { key: user.key, body: { port: 8080 } });
    assert.equal(exposed.statusCode, 200, exposed.body);
    const host = new URL(exposed.json<{ url: string }>().url).host;
    assert.equal((await hostRequest(s.url, host, '/')).status, 503, 'the exposure answers (its sandbox is not running yet)');
    assert.equal((await s.t.request('DELETE', `/api/v1/users/${user.id}`)).statusCode, 200);
    assert.equal((await hostRequest(s.url, host, '/')).status, 404);
    assert.deepEqual(await s.t.server.store.listExposures([id]), []);
  });

  it('revoking a key closes the tunnel link it opened and deletes the tunnel', async () => {
    const user = await s.t.createUser('tunneler');
    const second = await newKey(s.t, user.id);
    const created = await s.t.request('POST', '/api/v1/tunnel', { key: second.key, body: { local_port: 9 } });
    assert.equal(created.statusCode, 201, created.body);
    const tunnel = created.json<{ tunnel_id: string; binding_secret: string }>();
    const ws = new WebSocket(`${s.url.replace('http', 'ws')}/api/v1/tunnel/${tunnel.tunnel_id}/connect`, {
      headers: { authorization: `Bearer ${second.key}`, 'x-corral-binding-secret': tunnel.binding_secret },
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    assert.equal((await s.t.request('DELETE', `/api/v1/keys/${second.id}`, { key: user.key })).statusCode, 200);
    const code = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 3_000))]);
    if (code === -1) ws.terminate();
    assert.notEqual(code, -1, 'the tunnel link is closed within seconds');
    const seen = await s.t.request('GET', `/api/v1/tunnel/${tunnel.tunnel_id}`, { key: user.key });
    assert.equal(seen.statusCode, 404, 'the tunnel is gone');
  });
});

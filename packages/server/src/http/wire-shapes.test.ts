/**
 * Prime-specific wire facts from the protocol notes (/work/shared/reference/prime-sandbox-protocol.md
 * §2 and §8) checked against the in-process server: casing, required fields, JSON-object bodies,
 * the SDK's empty-body POST, DELETE with a body, batch status order, label AND-matching, id shape
 * and secret masking.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { startTestServer, type TestServer } from '../testing/test-server.js';

/** §2.4: the fields `SandboxResponse` must carry for the SDK's model to load, with their JSON types. */
const SDK_REQUIRED_SANDBOX_FIELDS: Record<string, 'string' | 'number' | 'integer'> = {
  id: 'string',
  name: 'string',
  dockerImage: 'string',
  cpuCores: 'number',
  memoryGB: 'number',
  diskSizeGB: 'number',
  diskMountPath: 'string',
  gpuCount: 'integer',
  status: 'string',
  timeoutMinutes: 'integer',
  createdAt: 'string',
  updatedAt: 'string',
};

const STATUSES = ['PENDING', 'PROVISIONING', 'RUNNING', 'PAUSED', 'ERROR', 'TERMINATED', 'TIMEOUT'];
/** §2.4: "24-char lowercase alnum, cuid-like". */
const ID_SHAPE = /^[a-z0-9]{24}$/;
/** §2.6: how a TS client in the wild validates `user_ns` / `job_id` as URL segments. */
const URL_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

type Json = Record<string, unknown>;

function objectBody(response: LightMyRequestResponse, what: string): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(response.body);
  } catch {
    assert.fail(`${what}: body is not JSON: ${response.statusCode} ${response.body.slice(0, 200)}`);
  }
  assert.ok(parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed), `${what}: body is not a JSON object: ${response.body.slice(0, 200)}`);
  return parsed as Json;
}

function assertSandboxShape(sandbox: Json, what: string): void {
  for (const [field, type] of Object.entries(SDK_REQUIRED_SANDBOX_FIELDS)) {
    const value = sandbox[field];
    if (type === 'integer') assert.ok(Number.isInteger(value), `${what}: ${field} should be an integer, got ${JSON.stringify(value)}`);
    else assert.equal(typeof value, type, `${what}: ${field} should be a ${type}, got ${JSON.stringify(value)}`);
  }
  // Sandbox objects are camelCase (§2.1): no snake_case keys at all.
  const snake = Object.keys(sandbox).filter((k) => k.includes('_'));
  assert.deepEqual(snake, [], `${what}: snake_case keys in a SandboxResponse`);
  assert.match(sandbox.id as string, ID_SHAPE, `${what}: id shape`);
  assert.ok(STATUSES.includes(sandbox.status as string), `${what}: status ${String(sandbox.status)}`);
  for (const field of ['createdAt', 'updatedAt']) {
    assert.ok(!Number.isNaN(Date.parse(sandbox[field] as string)), `${what}: ${field} is not a timestamp: ${String(sandbox[field])}`);
  }
}

describe('Prime wire shapes (protocol §2, §8)', () => {
  let ts: TestServer;
  let userCount = 0;

  before(async () => {
    ts = await startTestServer();
  });

  after(async () => {
    await ts?.close();
  });

  /** A fresh user, so listings only see what the test created. */
  async function freshUser(): Promise<string> {
    return (await ts.createUser(`wire-${++userCount}`)).key;
  }

  async function create(key: string, body: Json = {}): Promise<Json> {
    const response = await ts.request('POST', '/api/v1/sandbox', { key, body: { name: 'wire', docker_image: 'busybox', ...body } });
    assert.equal(response.statusCode, 201, response.body);
    return objectBody(response, 'create');
  }

  test('SandboxResponse is camelCase with every SDK-required field, on create, get, list, patch and delete-then-get', async () => {
    const key = await freshUser();
    const created = await create(key, { cpu_cores: 0.5, memory_gb: 1.5, disk_size_gb: 3, labels: ['x'] });
    assertSandboxShape(created, 'create');
    assert.equal(created.cpuCores, 0.5);
    assert.equal(created.memoryGB, 1.5);
    assert.equal(created.diskSizeGB, 3);
    const id = created.id as string;
    const fetched = objectBody(await ts.request('GET', `/api/v1/sandbox/${id}`, { key }), 'get');
    assertSandboxShape(fetched, 'get');
    const list = objectBody(await ts.request('GET', '/api/v1/sandbox', { key }), 'list');
    const items = list.sandboxes as Json[];
    assert.equal(items.length, 1);
    assertSandboxShape(items[0] ?? {}, 'list item');
    const patched = await ts.request('PATCH', `/api/v1/sandbox/${id}`, { key, body: { labels: ['y'] } });
    assert.equal(patched.statusCode, 200, patched.body);
    assertSandboxShape(objectBody(patched, 'patch'), 'patch');
    assert.equal((await ts.request('DELETE', `/api/v1/sandbox/${id}`, { key })).statusCode, 200);
    const ended = objectBody(await ts.request('GET', `/api/v1/sandbox/${id}`, { key }), 'get after delete');
    assertSandboxShape(ended, 'get after delete');
    assert.equal(ended.status, 'TERMINATED');
  });

  test('the list wrapper is snake_case: sandboxes, total, page, per_page, has_next', async () => {
    const key = await freshUser();
    for (let i = 0; i < 3; i++) await create(key);
    const first = objectBody(await ts.request('GET', '/api/v1/sandbox?page=1&per_page=2', { key }), 'list page 1');
    assert.deepEqual(Object.keys(first).sort(), ['has_next', 'page', 'per_page', 'sandboxes', 'total']);
    assert.equal(first.total, 3);
    assert.equal(first.page, 1);
    assert.equal(first.per_page, 2);
    assert.equal(first.has_next, true);
    assert.equal((first.sandboxes as unknown[]).length, 2);
    const second = objectBody(await ts.request('GET', '/api/v1/sandbox?page=2&per_page=2', { key }), 'list page 2');
    assert.equal(second.has_next, false);
    assert.equal((second.sandboxes as unknown[]).length, 1);
    const defaults = objectBody(await ts.request('GET', '/api/v1/sandbox', { key }), 'list defaults');
    assert.equal(defaults.page, 1, '§2.2: page defaults to 1');
    assert.equal(defaults.per_page, 50, '§2.2: per_page defaults to 50');
    // §2.2 / §8: per_page 1..1000.
    assert.equal((await ts.request('GET', '/api/v1/sandbox?per_page=1000', { key })).statusCode, 200);
    assert.equal((await ts.request('GET', '/api/v1/sandbox?per_page=1001', { key })).statusCode, 422);
  });

  test('every response body is a JSON object: DELETE, errors, unknown routes', async () => {
    const key = await freshUser();
    const id = (await create(key)).id as string;
    const cases: Array<[string, Promise<LightMyRequestResponse>, number]> = [
      ['DELETE /sandbox/{id}', ts.request('DELETE', `/api/v1/sandbox/${id}`, { key }), 200],
      ['DELETE /sandbox/{id} again', ts.request('DELETE', `/api/v1/sandbox/${id}`, { key }), 200],
      ['DELETE /sandbox (bulk)', ts.request('DELETE', '/api/v1/sandbox', { key, body: { sandbox_ids: ['nope'] } }), 200],
      ['GET unknown sandbox', ts.request('GET', '/api/v1/sandbox/aaaaaaaaaaaaaaaaaaaaaaaa', { key }), 404],
      ['DELETE unknown sandbox', ts.request('DELETE', '/api/v1/sandbox/aaaaaaaaaaaaaaaaaaaaaaaa', { key }), 404],
      ['unknown route', ts.request('GET', '/api/v1/no-such-route', { key }), 404],
      ['unknown route, no key', ts.request('GET', '/api/v1/no-such-route', { key: null }), 404],
      ['unknown method on a known path', ts.request('PUT', '/api/v1/sandbox', { key, body: {} }), 404],
      ['no key', ts.request('GET', '/api/v1/sandbox', { key: null }), 401],
      ['bad key', ts.request('GET', '/api/v1/sandbox', { key: 'corral_nope' }), 401],
      ['validation error', ts.request('POST', '/api/v1/sandbox', { key, body: { name: '' } }), 422],
      ['malformed JSON', ts.request('POST', '/api/v1/sandbox', { key, rawBody: '{"name":' }), 400],
      ['logs', ts.request('GET', `/api/v1/sandbox/${id}/logs`, { key }), 200],
      ['error-context', ts.request('GET', `/api/v1/sandbox/${id}/error-context`, { key }), 200],
      ['list exposures', ts.request('GET', `/api/v1/sandbox/${id}/expose`, { key }), 200],
    ];
    for (const [what, pending, status] of cases) {
      const response = await pending;
      assert.equal(response.statusCode, status, `${what}: ${response.body}`);
      const body = objectBody(response, what);
      if (status >= 400) assert.equal(typeof body.detail, 'string', `${what}: errors carry a string "detail" (§2.1)`);
    }
    const deleted = objectBody(await ts.request('DELETE', `/api/v1/sandbox/${(await create(key)).id as string}`, { key }), 'delete');
    assert.equal(deleted.success, true);
    assert.equal(typeof deleted.message, 'string');
    const logs = objectBody(await ts.request('GET', `/api/v1/sandbox/${id}/logs`, { key }), 'logs');
    assert.equal(typeof logs.logs, 'string');
    const context = objectBody(await ts.request('GET', `/api/v1/sandbox/${id}/error-context`, { key }), 'error-context');
    assert.deepEqual(Object.keys(context).sort(), ['errorMessage', 'errorType', 'status']);
    assert.equal(context.status, 'TERMINATED');
  });

  test('POST /sandbox/{id}/auth works with Content-Type: application/json and an empty body (what the SDK sends)', async () => {
    const key = await freshUser();
    const id = (await create(key)).id as string;
    const response = await ts.server.app.inject({
      method: 'POST',
      url: `/api/v1/sandbox/${id}/auth`,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      payload: '',
    });
    assert.equal(response.statusCode, 200, response.body);
    const body = objectBody(response, 'auth');
    assert.deepEqual(Object.keys(body).sort(), ['expires_at', 'gateway_url', 'job_id', 'token', 'user_ns']);
    assert.ok(typeof body.token === 'string' && body.token.length > 0);
    assert.match(body.gateway_url as string, /^https?:\/\/[^/]+/, '§8: gateway_url is absolute');
    assert.doesNotMatch(body.gateway_url as string, /\/$/, '§3: gateway_url has no trailing slash');
    assert.match(body.user_ns as string, URL_SEGMENT);
    assert.match(body.job_id as string, URL_SEGMENT);
    const expires = Date.parse(body.expires_at as string);
    assert.ok(!Number.isNaN(expires) && expires > Date.now(), `expires_at is a future ISO time: ${String(body.expires_at)}`);
    // And with no content type and no body at all.
    const bare = await ts.request('POST', `/api/v1/sandbox/${id}/auth`, { key });
    assert.equal(bare.statusCode, 200, bare.body);
  });

  test('DELETE /sandbox takes a JSON body (ids, labels) and ends exactly those sandboxes', async () => {
    const key = await freshUser();
    const a = (await create(key, { labels: ['batch-1'] })).id as string;
    const b = (await create(key, { labels: ['batch-1', 'keep'] })).id as string;
    const c = (await create(key, { labels: ['other'] })).id as string;
    const byIds = await ts.request('DELETE', '/api/v1/sandbox', { key, body: { sandbox_ids: [a, 'aaaaaaaaaaaaaaaaaaaaaaaa'] } });
    assert.equal(byIds.statusCode, 200, byIds.body);
    const idsBody = objectBody(byIds, 'bulk delete by ids');
    assert.deepEqual(idsBody.succeeded, [a]);
    assert.deepEqual(idsBody.failed, [{ sandbox_id: 'aaaaaaaaaaaaaaaaaaaaaaaa', error: 'Sandbox not found' }]);
    assert.equal(typeof idsBody.message, 'string');
    const byLabels = objectBody(await ts.request('DELETE', '/api/v1/sandbox', { key, body: { labels: ['batch-1', 'keep'] } }), 'bulk delete by labels');
    assert.deepEqual(byLabels.succeeded, [b]);
    const statuses = await Promise.all([a, b, c].map(async (id) => objectBody(await ts.request('GET', `/api/v1/sandbox/${id}`, { key }), id).status));
    assert.deepEqual(statuses, ['TERMINATED', 'TERMINATED', 'PENDING']);
  });

  test('POST /sandbox/status:batchGet keeps request order and reports unknown ids as NOT_FOUND', async () => {
    const key = await freshUser();
    const otherKey = await freshUser();
    const [a, b, c] = [(await create(key)).id, (await create(key)).id, (await create(key)).id] as string[];
    const foreign = (await create(otherKey)).id as string;
    const unknown = 'zzzzzzzzzzzzzzzzzzzzzzzz';
    const response = await ts.request('POST', '/api/v1/sandbox/status:batchGet', { key, body: { sandbox_ids: [c, unknown, a, foreign, b] } });
    assert.equal(response.statusCode, 200, response.body);
    const body = objectBody(response, 'batchGet');
    const statuses = body.statuses as Json[];
    assert.deepEqual(
      statuses.map((s) => s.sandbox_id),
      [c, a, b],
    );
    for (const s of statuses) {
      assert.deepEqual(Object.keys(s).sort(), ['error_message', 'error_type', 'pending_image_build_id', 'sandbox_id', 'status']);
      assert.equal(s.status, 'PENDING');
    }
    const errors = body.errors as Json[];
    assert.deepEqual(
      errors.map((e) => [e.sandbox_id, e.code]),
      [
        [unknown, 'NOT_FOUND'],
        [foreign, 'NOT_FOUND'],
      ],
    );
    for (const e of errors) assert.equal(typeof e.message, 'string');
  });

  test('labels: repeated query params AND-match; one label matches every sandbox that has it', async () => {
    const key = await freshUser();
    const onlyA = (await create(key, { labels: ['a'] })).id as string;
    const both = (await create(key, { labels: ['a', 'b'] })).id as string;
    const onlyB = (await create(key, { labels: ['b'] })).id as string;
    const ids = async (query: string): Promise<string[]> => {
      const response = await ts.request('GET', `/api/v1/sandbox${query}`, { key });
      assert.equal(response.statusCode, 200, response.body);
      return (objectBody(response, query).sandboxes as Json[]).map((s) => s.id as string).sort();
    };
    assert.deepEqual(await ids('?labels=a&labels=b'), [both]);
    assert.deepEqual(await ids('?labels=b&labels=a'), [both]);
    assert.deepEqual(await ids('?labels=a'), [onlyA, both].sort());
    assert.deepEqual(await ids('?labels=b'), [both, onlyB].sort());
    assert.deepEqual(await ids('?labels=a&labels=b&labels=c'), []);
    assert.deepEqual(await ids(''), [onlyA, both, onlyB].sort());
  });

  test('ids are 24-char lowercase alphanumerics and unique', async () => {
    const key = await freshUser();
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const id = (await create(key)).id as string;
      assert.match(id, ID_SHAPE);
      ids.add(id);
    }
    assert.equal(ids.size, 20);
  });

  test('secrets are masked as *** on create, get and list; values never leave the server', async () => {
    const key = await freshUser();
    const created = await ts.request('POST', '/api/v1/sandbox', {
      key,
      body: { name: 's', docker_image: 'busybox', secrets: { API_TOKEN: 'hunter2-secret-value', OTHER: 'second-secret' }, environment_vars: { PLAIN: 'visible' } },
    });
    assert.equal(created.statusCode, 201, created.body);
    const id = objectBody(created, 'create').id as string;
    const responses: Array<[string, LightMyRequestResponse]> = [
      ['create', created],
      ['get', await ts.request('GET', `/api/v1/sandbox/${id}`, { key })],
      ['list', await ts.request('GET', '/api/v1/sandbox', { key })],
      ['patch', await ts.request('PATCH', `/api/v1/sandbox/${id}`, { key, body: { labels: ['z'] } })],
    ];
    for (const [what, response] of responses) {
      assert.equal(response.statusCode, what === 'create' ? 201 : 200, `${what}: ${response.body}`);
      assert.ok(!response.body.includes('hunter2-secret-value') && !response.body.includes('second-secret'), `${what} leaks a secret value`);
      const body = objectBody(response, what);
      const sandbox = what === 'list' ? ((body.sandboxes as Json[])[0] ?? {}) : body;
      assert.deepEqual(sandbox.secrets, { API_TOKEN: '***', OTHER: '***' }, `${what}: secrets`);
      assert.deepEqual(sandbox.environmentVars, { PLAIN: 'visible' }, `${what}: environment vars are not masked`);
    }
  });

  test('secret names that are also Object.prototype members are stored and masked, not mistaken for env-var clashes', async () => {
    const key = await freshUser();
    // `toString`/`constructor` are valid env-var names; they clash with nothing in environment_vars here.
    const response = await ts.request('POST', '/api/v1/sandbox', {
      key,
      body: { name: 's', docker_image: 'busybox', secrets: { toString: 'proto-secret', constructor: 'proto-secret-2' }, environment_vars: { PLAIN: 'visible' } },
    });
    assert.equal(response.statusCode, 201, response.body);
    assert.ok(!response.body.includes('proto-secret'), 'create leaks a secret value');
    assert.deepEqual(objectBody(response, 'create').secrets, { toString: '***', constructor: '***' });
  });
});

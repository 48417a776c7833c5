import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TestServer, startTestServer } from '../testing/test-server.js';

interface Sandbox {
  id: string;
  status: string;
  labels: string[];
  secrets: Record<string, string> | null;
  environmentVars: Record<string, string> | null;
  timeoutMinutes: number;
  idleTimeoutMinutes: number | null;
  terminationReason: string | null;
  terminatedAt: string | null;
  [key: string]: unknown;
}

const FULL_REQUEST = {
  name: 'full',
  docker_image: 'python:3.11-slim',
  start_command: 'sleep 1000',
  cpu_cores: 1.5,
  memory_gb: 0.5,
  disk_size_gb: 3.25,
  gpu_count: 0,
  gpu_type: null,
  vm: false,
  network_access: false,
  timeout_minutes: 30,
  idle_timeout_minutes: 10,
  environment_vars: { FOO: 'bar', EMPTY: '' },
  secrets: { API_TOKEN: 'super-secret-value' },
  labels: ['exp-1', 'batch-a'],
  region: 'us',
  advanced_configs: { nested: { a: [1, 2] } },
  registry_credentials_id: 'cred-1',
  guaranteed: true,
  idempotency_key: 'idem-full',
};

describe('sandbox API', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(async () => t.close());

  it('stores every CreateSandboxRequest field and returns it camelCase, with secrets masked', async () => {
    const credential = await t.request('POST', '/api/v1/template/registry-credentials', {
      body: { name: 'private', server: '127.0.0.1:5001', username: 'corral', password: 'registry-password' },
    });
    assert.equal(credential.statusCode, 201, credential.body);
    const credentialId = credential.json<{ id: string }>().id;
    const created = await t.request('POST', '/api/v1/sandbox', { body: { ...FULL_REQUEST, registry_credentials_id: credentialId } });
    assert.equal(created.statusCode, 201, created.body);
    const s = created.json<Sandbox>();
    assert.match(s.id, /^[a-z0-9]{24}$/);
    const expected = {
      name: 'full',
      dockerImage: 'python:3.11-slim',
      startCommand: 'sleep 1000',
      cpuCores: 1.5,
      memoryGB: 0.5,
      diskSizeGB: 3.25,
      diskMountPath: '/sandbox-workspace',
      gpuCount: 0,
      gpuType: null,
      vm: false,
      networkAccess: false,
      status: 'PENDING',
      timeoutMinutes: 30,
      idleTimeoutMinutes: 10,
      environmentVars: { FOO: 'bar', EMPTY: '' },
      secrets: { API_TOKEN: '***' },
      labels: ['exp-1', 'batch-a'],
      region: 'us',
      advancedConfigs: { nested: { a: [1, 2] } },
      registryCredentialsId: credentialId,
      guaranteed: true,
      startedAt: null,
      exitCode: null,
    };
    for (const [key, value] of Object.entries(expected)) assert.deepEqual(s[key], value, key);
    const fetched = await t.request('GET', `/api/v1/sandbox/${s.id}`);
    assert.equal(fetched.statusCode, 200);
    for (const [key, value] of Object.entries(expected)) assert.deepEqual(fetched.json<Sandbox>()[key], value, key);
    assert.ok(!fetched.body.includes('super-secret-value'), 'secret value leaked on GET');
    const listed = await t.request('GET', '/api/v1/sandbox?per_page=1000');
    assert.ok(!listed.body.includes('super-secret-value'), 'secret value leaked on list');
    const stored = await t.server.store.getSandbox(s.id);
    assert.deepEqual(stored?.secrets, { API_TOKEN: 'super-secret-value' }, 'the real secret is kept for the sandbox');
  });

  it('lists registry credentials without their passwords and refuses unknown ones on create', async () => {
    const listed = await t.request('GET', '/api/v1/template/registry-credentials');
    assert.equal(listed.statusCode, 200);
    assert.ok(listed.json<{ credentials: Array<{ server: string }> }>().credentials.some((c) => c.server === '127.0.0.1:5001'));
    assert.ok(!listed.body.includes('registry-password'));
    const stranger = await t.createUser('cred-stranger');
    const strangerList = await t.request('GET', '/api/v1/template/registry-credentials', { key: stranger.key });
    assert.deepEqual(strangerList.json(), { credentials: [] });
    const own = listed.json<{ credentials: Array<{ id: string }> }>().credentials[0]?.id ?? '';
    const foreignUse = await t.request('POST', '/api/v1/sandbox', { key: stranger.key, body: { name: 'x', docker_image: 'busybox', registry_credentials_id: own } });
    assert.equal(foreignUse.statusCode, 422);
    assert.equal(foreignUse.json<{ errors: Array<{ param: string }> }>().errors[0]?.param, 'registry_credentials_id');
    const badServer = await t.request('POST', '/api/v1/template/registry-credentials', { body: { name: 'x', server: 'https://x/y', username: 'u', password: 'p' } });
    assert.equal(badServer.statusCode, 422);
  });

  it('applies the documented defaults', async () => {
    const s = (await t.request('POST', '/api/v1/sandbox', { body: { name: 'defaults', docker_image: 'busybox' } })).json<Sandbox>();
    assert.equal(s.cpuCores, 1);
    assert.equal(s.memoryGB, 2);
    assert.equal(s.diskSizeGB, 10);
    assert.equal(s.timeoutMinutes, 60);
    assert.equal(s.networkAccess, true);
    assert.deepEqual(s.labels, []);
    assert.equal(s.startCommand, null);
  });

  it('turns a structured start command into a shell string that runs exactly that argv', async () => {
    const s = (
      await t.request('POST', '/api/v1/sandbox', {
        body: { name: 'argv', docker_image: 'busybox', start_command: { executable: '/bin/echo', args: ["it's", 'a b'] } },
      })
    ).json<Sandbox>();
    assert.equal(s.startCommand, `/bin/echo 'it'\\''s' 'a b'`);
  });

  it('returns the same sandbox for a repeated idempotency key', async () => {
    const body = { name: 'idem', docker_image: 'busybox', idempotency_key: 'key-123' };
    const [a, b] = await Promise.all([t.request('POST', '/api/v1/sandbox', { body }), t.request('POST', '/api/v1/sandbox', { body })]);
    assert.equal(a.statusCode, 201);
    assert.equal(b.statusCode, 201);
    assert.equal(a.json<Sandbox>().id, b.json<Sandbox>().id);
    const other = await t.request('POST', '/api/v1/sandbox', { body: { ...body, idempotency_key: 'key-456' } });
    assert.notEqual(other.json<Sandbox>().id, a.json<Sandbox>().id);
  });

  it('rejects bad fields with 422 naming each one', async () => {
    const response = await t.request('POST', '/api/v1/sandbox', {
      body: { name: '', docker_image: 'x', cpu_cores: 17, memory_gb: 0, timeout_minutes: 1441, gpu_count: 1.5, labels: 'x' },
    });
    assert.equal(response.statusCode, 422);
    const params = response.json<{ errors: Array<{ param: string; details: string }> }>().errors.map((e) => e.param).sort();
    assert.deepEqual(params, ['cpu_cores', 'gpu_count', 'labels', 'memory_gb', 'name', 'timeout_minutes']);
    const missing = await t.request('POST', '/api/v1/sandbox', { body: {} });
    assert.deepEqual(missing.json<{ errors: Array<{ param: string }> }>().errors.map((e) => e.param).sort(), ['name']);
    // docker_image is required unless checkpoint_id restores a checkpoint (checked past the schema).
    const noImage = await t.request('POST', '/api/v1/sandbox', { body: { name: 'x' } });
    assert.equal(noImage.statusCode, 422);
    assert.deepEqual(noImage.json<{ errors: Array<{ param: string }> }>().errors.map((e) => e.param), ['docker_image']);
  });

  it('refuses semantic conflicts with 422', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ gpu_count: 1 }, 'gpu_type'],
      [{ gpu_count: 1, gpu_type: 'H100_80GB' }, 'gpu_count'],
      [{ timeout_minutes: 5, idle_timeout_minutes: 10 }, 'idle_timeout_minutes'],
      [{ timeout_minutes: 0 }, 'timeout_minutes'],
      [{ environment_vars: { A: '1' }, secrets: { A: '2' } }, 'secrets.A'],
      [{ team_id: 'not-my-team' }, 'team_id'],
    ];
    for (const [extra, param] of cases) {
      const response = await t.request('POST', '/api/v1/sandbox', { body: { name: 'x', docker_image: 'busybox', ...extra } });
      assert.equal(response.statusCode, 422, `${JSON.stringify(extra)}: ${response.body}`);
      assert.equal(response.json<{ errors: Array<{ param: string }> }>().errors[0]?.param, param);
    }
  });

  it('answers malformed JSON, wrong content types and unknown routes with JSON errors', async () => {
    const malformed = await t.request('POST', '/api/v1/sandbox', { rawBody: '{"name": ' });
    assert.equal(malformed.statusCode, 400);
    assert.equal(malformed.json<{ code: string }>().code, 'MALFORMED_REQUEST');
    const wrongType = await t.request('POST', '/api/v1/sandbox', { rawBody: 'name=x', headers: { 'content-type': 'text/plain' } });
    assert.equal(wrongType.statusCode, 415);
    assert.equal(typeof wrongType.json<{ detail: string }>().detail, 'string');
    const unknown = await t.request('GET', '/api/v1/nope');
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json<{ code: string }>().code, 'ROUTE_NOT_FOUND');
  });

  it('lists with filters, ALL-match labels, pagination, total and has_next', async () => {
    const owner = await t.createUser('lister');
    const make = async (name: string, labels: string[]): Promise<string> =>
      (await t.request('POST', '/api/v1/sandbox', { key: owner.key, body: { name, docker_image: 'busybox', labels } })).json<Sandbox>().id;
    const a = await make('a', ['x', 'y']);
    const b = await make('b', ['x']);
    const c = await make('c', ['y']);
    await t.request('DELETE', `/api/v1/sandbox/${c}`, { key: owner.key });
    const list = async (query: string) =>
      (await t.request('GET', `/api/v1/sandbox?${query}`, { key: owner.key })).json<{
        sandboxes: Sandbox[];
        total: number;
        page: number;
        per_page: number;
        has_next: boolean;
      }>();
    assert.deepEqual((await list('labels=x&labels=y')).sandboxes.map((s) => s.id), [a]);
    assert.deepEqual((await list('labels=x')).sandboxes.map((s) => s.id), [b, a], 'newest first');
    assert.deepEqual((await list('labels=y')).sandboxes.map((s) => s.id), [c, a]);
    assert.deepEqual((await list('labels=y&is_active=true')).sandboxes.map((s) => s.id), [a]);
    assert.deepEqual((await list('status=TERMINATED')).sandboxes.map((s) => s.id), [c]);
    const page1 = await list('per_page=2&page=1');
    assert.equal(page1.total, 3);
    assert.equal(page1.per_page, 2);
    assert.equal(page1.has_next, true);
    assert.deepEqual(page1.sandboxes.map((s) => s.id), [c, b]);
    const page2 = await list('per_page=2&page=2');
    assert.equal(page2.has_next, false);
    assert.deepEqual(page2.sandboxes.map((s) => s.id), [a]);
    const tooMany = await t.request('GET', '/api/v1/sandbox?per_page=1001', { key: owner.key });
    assert.equal(tooMany.statusCode, 422);
    assert.equal(tooMany.json<{ errors: Array<{ param: string }> }>().errors[0]?.param, 'per_page');
  });

  it('updates timeout and labels, and refuses timeouts on an ended sandbox', async () => {
    const id = (await t.request('POST', '/api/v1/sandbox', { body: { name: 'patch', docker_image: 'busybox', labels: ['old'] } })).json<Sandbox>().id;
    const patched = await t.request('PATCH', `/api/v1/sandbox/${id}`, { body: { timeout_minutes: 120, labels: ['new', 'new', 'other'] } });
    assert.equal(patched.statusCode, 200, patched.body);
    assert.equal(patched.json<Sandbox>().timeoutMinutes, 120);
    assert.deepEqual(patched.json<Sandbox>().labels, ['new', 'other']);
    const byLabel = await t.request('GET', '/api/v1/sandbox?labels=new');
    assert.ok(byLabel.json<{ sandboxes: Sandbox[] }>().sandboxes.some((s) => s.id === id));
    const byOld = await t.request('GET', '/api/v1/sandbox?labels=old');
    assert.ok(!byOld.json<{ sandboxes: Sandbox[] }>().sandboxes.some((s) => s.id === id));
    const bad = await t.request('PATCH', `/api/v1/sandbox/${id}`, { body: { timeout_minutes: 5, idle_timeout_minutes: 30 } });
    assert.equal(bad.statusCode, 422);
    await t.request('DELETE', `/api/v1/sandbox/${id}`);
    const late = await t.request('PATCH', `/api/v1/sandbox/${id}`, { body: { timeout_minutes: 10 } });
    assert.equal(late.statusCode, 409);
  });

  it('deletes idempotently and keeps the ended row readable', async () => {
    const id = (await t.request('POST', '/api/v1/sandbox', { body: { name: 'del', docker_image: 'busybox' } })).json<Sandbox>().id;
    const first = await t.request('DELETE', `/api/v1/sandbox/${id}`);
    assert.equal(first.statusCode, 200);
    assert.equal(first.json<{ success: boolean }>().success, true);
    const again = await t.request('DELETE', `/api/v1/sandbox/${id}`);
    assert.equal(again.statusCode, 200);
    assert.match(again.json<{ message: string }>().message, /already ended/);
    const s = (await t.request('GET', `/api/v1/sandbox/${id}`)).json<Sandbox>();
    assert.equal(s.status, 'TERMINATED');
    assert.equal(s.terminationReason, 'deleted');
    assert.ok(s.terminatedAt);
    const ctx = await t.request('GET', `/api/v1/sandbox/${id}/error-context`);
    assert.deepEqual(ctx.json(), { status: 'TERMINATED', errorType: null, errorMessage: null });
    assert.deepEqual((await t.request('GET', `/api/v1/sandbox/${id}/logs`)).json(), { logs: '' });
  });

  it('bulk deletes by ids and by labels, reporting what failed', async () => {
    const owner = await t.createUser('bulk');
    const make = async (labels: string[]): Promise<string> =>
      (await t.request('POST', '/api/v1/sandbox', { key: owner.key, body: { name: 'b', docker_image: 'busybox', labels } })).json<Sandbox>().id;
    const ids = [await make(['run-1']), await make(['run-1']), await make(['run-2'])];
    const foreign = (await t.request('POST', '/api/v1/sandbox', { body: { name: 'admin-owned', docker_image: 'busybox', labels: ['run-1'] } })).json<Sandbox>().id;
    const byLabel = await t.request('DELETE', '/api/v1/sandbox', { key: owner.key, body: { labels: ['run-1'] } });
    assert.equal(byLabel.statusCode, 200, byLabel.body);
    assert.deepEqual(byLabel.json<{ succeeded: string[] }>().succeeded.sort(), [ids[0], ids[1]].sort());
    assert.equal((await t.request('GET', `/api/v1/sandbox/${foreign}`)).json<Sandbox>().status, 'PENDING', "another user's sandbox is untouched");
    const byIds = await t.request('DELETE', '/api/v1/sandbox', { key: owner.key, body: { sandbox_ids: [ids[2], foreign, 'missing'] } });
    const result = byIds.json<{ succeeded: string[]; failed: Array<{ sandbox_id: string; error: string }> }>();
    assert.deepEqual(result.succeeded, [ids[2]]);
    assert.deepEqual(result.failed.map((f) => f.sandbox_id).sort(), [foreign, 'missing'].sort());
    const none = await t.request('DELETE', '/api/v1/sandbox', { key: owner.key, body: {} });
    assert.equal(none.statusCode, 422);
    const tooMany = await t.request('DELETE', '/api/v1/sandbox', { key: owner.key, body: { sandbox_ids: Array.from({ length: 501 }, (_, i) => `id${i}`) } });
    assert.equal(tooMany.statusCode, 422);
  });

  it('batch-gets statuses in request order with per-id errors', async () => {
    const ids = await Promise.all(
      [1, 2, 3].map(async (i) => (await t.request('POST', '/api/v1/sandbox', { body: { name: `s${i}`, docker_image: 'busybox' } })).json<Sandbox>().id),
    );
    const order = [ids[2], 'ghost', ids[0], ids[1]] as string[];
    const response = await t.request('POST', '/api/v1/sandbox/status:batchGet', { body: { sandbox_ids: order } });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json<{ statuses: Array<{ sandbox_id: string; status: string }>; errors: Array<{ sandbox_id: string; code: string }> }>();
    assert.deepEqual(body.statuses.map((s) => s.sandbox_id), [ids[2], ids[0], ids[1]]);
    assert.deepEqual(body.errors, [{ sandbox_id: 'ghost', code: 'NOT_FOUND', message: 'Sandbox ghost not found' }]);
    const dup = await t.request('POST', '/api/v1/sandbox/status:batchGet', { body: { sandbox_ids: [ids[0], ids[0]] } });
    assert.equal(dup.statusCode, 422);
    const big = await t.request('POST', '/api/v1/sandbox/status:batchGet', { body: { sandbox_ids: Array.from({ length: 101 }, (_, i) => `x${i}`) } });
    assert.equal(big.statusCode, 422);
  });

  it('issues a gateway token scoped to the sandbox, with an absolute gateway URL', async () => {
    const id = (await t.request('POST', '/api/v1/sandbox', { body: { name: 'auth', docker_image: 'busybox' } })).json<Sandbox>().id;
    const response = await t.request('POST', `/api/v1/sandbox/${id}/auth`, { rawBody: '' });
    assert.equal(response.statusCode, 200, response.body);
    const auth = response.json<{ token: string; gateway_url: string; user_ns: string; job_id: string; expires_at: string }>();
    assert.match(auth.gateway_url, /^https?:\/\/[^/]+\/gateway$/);
    assert.equal(auth.job_id, id);
    assert.match(auth.user_ns, /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/);
    assert.ok(Date.parse(auth.expires_at) > Date.now() + 30 * 60_000);
    assert.equal(auth.token.split('.').length, 3);
  });

  it('validates the network routes and hides other tenants\' sandboxes behind 404', async () => {
    const id = (await t.request('POST', '/api/v1/sandbox', { body: { name: 'net', docker_image: 'busybox' } })).json<Sandbox>().id;
    const badPort = await t.request('POST', `/api/v1/sandbox/${id}/expose`, { body: { port: 9001 } });
    assert.equal(badPort.statusCode, 422);
    assert.equal(badPort.json<{ errors: Array<{ param: string }> }>().errors[0]?.param, 'port');
    const sshTtl = await t.request('POST', `/api/v1/sandbox/${id}/ssh-session`, { body: { ttl_seconds: 99_999 } });
    assert.equal(sshTtl.statusCode, 422);
    const notRunning = await t.request('POST', `/api/v1/sandbox/${id}/ssh-session`, { body: {} });
    assert.equal(notRunning.statusCode, 409, 'a sandbox that has not started has no shell to open');
    const stranger = await t.createUser('stranger-net');
    const foreign = await t.request('POST', `/api/v1/sandbox/${id}/expose`, { key: stranger.key, body: { port: 8000 } });
    assert.equal(foreign.statusCode, 404);
    assert.equal((await t.request('GET', '/api/v1/tunnel/t-unknown')).statusCode, 404);
  });
});

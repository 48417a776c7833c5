import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { CorralMetrics } from '../services/corral-metrics.js';
import { SandboxEvents, truncateText } from '../services/sandbox-events.js';
import type { SandboxEventRecord } from '../records/event-records.js';
import type { SandboxRecord } from '../records/sandbox-records.js';
import type { Store } from '../store/store.js';
import { sandboxFixture } from '../testing/sandbox-fixture.js';
import { eventually } from '../testing/runtime-available.js';
import { startTestServer, type TestServer } from '../testing/test-server.js';
import { type GatewaySandbox, type GatewayTestServer, createSandbox, dockerMissing, execCall, startGatewayServer } from '../gateway/test-support.js';

interface WireEvent {
  id: string;
  sandboxId: string;
  at: string;
  type: string;
  actor: { userId: string; keyId: string | null } | null;
  data: Record<string, unknown>;
}

const SECRET = 'secret-value-7f3a9c';
const ENV_VALUE = 'env-value-2b8e41';

describe('GET /sandbox/{id}/events', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(async () => t?.close());

  it('records create, exposures, a policy change and the delete with actor and reason; pages; follows to the end; shows no secret', async () => {
    const user = await t.createUser('events-owner');
    const created = await t.request('POST', '/api/v1/sandbox', {
      key: user.key,
      body: { name: 'ev', docker_image: 'busybox', cpu_cores: 1, memory_gb: 1, disk_size_gb: 1, environment_vars: { MODE: ENV_VALUE }, secrets: { TOKEN: SECRET } },
    });
    assert.equal(created.statusCode, 201);
    const { id } = created.json<{ id: string }>();
    const exposed = await t.request('POST', `/api/v1/sandbox/${id}/expose`, { key: user.key, body: { port: 8000 } });
    assert.equal(exposed.statusCode, 200, exposed.body);
    const exposureId = exposed.json<{ exposure_id: string }>().exposure_id;
    assert.equal((await t.request('DELETE', `/api/v1/sandbox/${id}/expose/${exposureId}`, { key: user.key })).statusCode, 200);
    const policy = await t.request('PUT', `/api/v1/sandbox/${id}/egress-policy`, { key: user.key, body: { allowlist: ['pypi.org'], denylist: null } });
    assert.equal(policy.statusCode, 200, policy.body);
    assert.equal((await t.request('DELETE', `/api/v1/sandbox/${id}`, { key: user.key })).statusCode, 200);

    const all = await t.request('GET', `/api/v1/sandbox/${id}/events`, { key: user.key });
    assert.equal(all.statusCode, 200);
    const { events, hasMore } = all.json<{ events: WireEvent[]; hasMore: boolean }>();
    assert.equal(hasMore, false);
    assert.deepEqual(events.map((e) => e.type), ['sandbox.created', 'exposure.created', 'exposure.deleted', 'egress.policy_changed', 'sandbox.status']);
    const [createdEvent, exposure, , egress, ended] = events as [WireEvent, WireEvent, WireEvent, WireEvent, WireEvent];
    assert.deepEqual({ id: exposure.data.exposureId, port: exposure.data.port, actor: exposure.actor?.userId }, { id: exposureId, port: 8000, actor: user.id });
    assert.deepEqual({ allowlist: egress.data.allowlist, actor: egress.actor?.userId }, { allowlist: ['pypi.org'], actor: user.id });
    assert.equal(createdEvent.actor?.userId, user.id);
    assert.equal(typeof createdEvent.actor?.keyId, 'string');
    assert.deepEqual(createdEvent.data.secretNames, ['TOKEN']);
    assert.deepEqual(createdEvent.data.environmentVarNames, ['MODE']);
    assert.deepEqual({ from: ended.data.from, to: ended.data.to, reason: ended.data.reason }, { from: 'PENDING', to: 'TERMINATED', reason: 'deleted' });
    assert.ok(!all.body.includes(SECRET) && !all.body.includes(ENV_VALUE), 'no secret or env value in events');

    const first = await t.request('GET', `/api/v1/sandbox/${id}/events?limit=1`, { key: user.key });
    const page = first.json<{ events: WireEvent[]; hasMore: boolean }>();
    assert.equal(page.hasMore, true);
    assert.equal(page.events[0]?.id, createdEvent.id);
    const second = await t.request('GET', `/api/v1/sandbox/${id}/events?limit=1&after=${createdEvent.id}`, { key: user.key });
    assert.deepEqual(second.json<{ events: WireEvent[] }>().events.map((e) => e.id), [exposure.id]);

    // The sandbox has ended: a follow gives everything and ends.
    const follow = await t.request('GET', `/api/v1/sandbox/${id}/events?follow=true`, { key: user.key });
    assert.equal(follow.statusCode, 200);
    assert.match(String(follow.headers['content-type']), /^application\/x-ndjson/);
    const lines = follow.body.trim().split('\n').map((line) => JSON.parse(line) as WireEvent);
    assert.deepEqual(lines.map((e) => e.id), events.map((e) => e.id));
  });

  it('is owner-scoped (404 to others) and refuses bad paging with 422', async () => {
    const owner = await t.createUser('events-a');
    const other = await t.createUser('events-b');
    const created = await t.request('POST', '/api/v1/sandbox', { key: owner.key, body: { name: 'ev', docker_image: 'busybox', cpu_cores: 1, memory_gb: 1, disk_size_gb: 1 } });
    const { id } = created.json<{ id: string }>();
    const foreign = await t.request('GET', `/api/v1/sandbox/${id}/events`, { key: other.key });
    assert.equal(foreign.statusCode, 404);
    assert.equal(foreign.json<{ code: string }>().code, 'SANDBOX_NOT_FOUND');
    assert.equal((await t.request('GET', `/api/v1/sandbox/${id}/events?limit=0`, { key: owner.key })).statusCode, 422);
    assert.equal((await t.request('GET', `/api/v1/sandbox/${id}/events?after=../x`, { key: owner.key })).statusCode, 422);
  });
});

describe('SandboxEvents buffering', () => {
  const log = pino({ level: 'silent' });
  /** A store whose event writes are held (or fail) as the test says. */
  function fakeStore(write: () => Promise<void>): Store {
    return { onSandboxUpdated: () => () => undefined, insertSandboxEvents: write, listSandboxEvents: async () => [] } as unknown as Store;
  }
  const dropped = async (metrics: CorralMetrics, reason: string): Promise<number> =>
    (await metrics.eventsDropped.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

  it('never waits for the store: a full buffer drops new events and counts them', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const metrics = new CorralMetrics({ processMetrics: false });
    const events = new SandboxEvents(fakeStore(() => held), log, metrics, { maxBuffered: 2 });
    const seen: unknown[] = [];
    events.onWritten((batch) => seen.push(...batch.map((e) => e.data.i)));
    for (let i = 0; i < 5; i += 1) events.record('sb', 'exec', { i });
    assert.equal(await dropped(metrics, 'buffer_full'), 3);
    // Taken for a write that has not finished, they still count against the bound.
    const flushing = events.flush();
    events.record('sb', 'exec', { i: 5 });
    assert.equal(await dropped(metrics, 'buffer_full'), 4);
    release();
    await flushing;
    await events.close();
    assert.equal((await metrics.eventsWritten.get()).values[0]?.value, 2);
    assert.deepEqual(seen, [0, 1], 'listeners get what was stored, in order');
  });

  it('a failed write drops its batch, counted, without throwing to the recorder', async () => {
    const metrics = new CorralMetrics({ processMetrics: false });
    const events = new SandboxEvents(fakeStore(() => Promise.reject(new Error('database down'))), log, metrics);
    events.record('sb', 'exec', {});
    events.record('sb', 'exec', {});
    await events.flush();
    assert.equal(await dropped(metrics, 'write_failed'), 2);
    await events.close();
  });

  it('records status changes from store notifications; a first sight counts only if the status began just now', async () => {
    let notify: (row: SandboxRecord) => void = () => undefined;
    const written: SandboxEventRecord[] = [];
    const store = {
      onSandboxUpdated: (listener: (row: SandboxRecord) => void) => {
        notify = listener;
        return () => undefined;
      },
      insertSandboxEvents: async (events: SandboxEventRecord[]) => void written.push(...events),
    } as unknown as Store;
    const events = new SandboxEvents(store, log);
    const old = '2020-01-01T00:00:00.000Z';
    const now = new Date().toISOString();
    // Seen first long after it started (a PATCH after a restart): no event; its end is one.
    notify(sandboxFixture({ id: 'sb-old', userId: 'u', status: 'RUNNING', startedAt: old }));
    notify(sandboxFixture({ id: 'sb-old', userId: 'u', status: 'RUNNING', startedAt: old }));
    notify(sandboxFixture({ id: 'sb-old', userId: 'u', status: 'TIMEOUT', startedAt: old, terminatedAt: now, terminationReason: 'timeout' }));
    // An ended sandbox's container removed after a restart: no event.
    notify(sandboxFixture({ id: 'sb-ended', userId: 'u', status: 'TERMINATED', terminatedAt: old }));
    // A sandbox that just ended, first seen now: an event from null.
    notify(sandboxFixture({ id: 'sb-new', userId: 'u', status: 'ERROR', terminatedAt: now, errorType: 'OOM_KILLED', terminationReason: 'oom_killed', exitCode: 137 }));
    await events.close();
    assert.deepEqual(
      written.map((e) => [e.sandboxId, e.data.from, e.data.to, e.data.reason]),
      [
        ['sb-old', 'RUNNING', 'TIMEOUT', 'timeout'],
        ['sb-new', null, 'ERROR', 'oom_killed'],
      ],
    );
    assert.deepEqual({ errorType: written[1]?.data.errorType, exitCode: written[1]?.data.exitCode }, { errorType: 'OOM_KILLED', exitCode: 137 });
  });

  it('cuts text to 1 KiB without splitting a character', () => {
    assert.equal(truncateText('short'), 'short');
    const cut = truncateText('é'.repeat(2000));
    assert.ok(Buffer.byteLength(cut) <= 1024);
    assert.ok(cut.endsWith('…') && !cut.includes('\uFFFD'));
  });
});

const missing = dockerMissing();

describe('sandbox events of a real sandbox (Docker)', { timeout: 180_000, skip: missing !== undefined && process.env.CI !== 'true' ? missing : undefined }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    server = await startGatewayServer();
    sb = await createSandbox(server, { environment_vars: { MODE: ENV_VALUE }, secrets: { TOKEN: SECRET } });
  });
  after(async () => server?.close());

  it('a follow shows the whole life: create, start, exec, transfer, end; never a secret or file content', async () => {
    const headers = { authorization: `Bearer ${server.t.adminKey}` };
    const follow = await fetch(`${server.url}/api/v1/sandbox/${sb.id}/events?follow=true`, { headers });
    assert.equal(follow.status, 200);
    const body = follow.text();

    const exec = await execCall(sb, { command: `echo "$TOKEN" > /tmp/t; echo ${'x'.repeat(1500)}`, env: { EXTRA: 'exec-env-value-99' } });
    assert.equal(exec.status, 200);
    const form = new FormData();
    form.append('file', new Blob(['FILE-CONTENT-MARKER-5521']), 'f.txt');
    const upload = await fetch(`${sb.base}/upload?path=/tmp/f.txt`, { method: 'POST', headers: { authorization: `Bearer ${sb.token}` }, body: form });
    assert.equal(upload.status, 200);
    const read = await fetch(`${sb.base}/read-file?path=/tmp/f.txt`, { headers: { authorization: `Bearer ${sb.token}` } });
    assert.equal(read.status, 200);
    // The follow sees them as they are written, before the sandbox ends.
    await eventually(async () => {
      const page = await server.t.request('GET', `/api/v1/sandbox/${sb.id}/events`);
      return page.json<{ events: WireEvent[] }>().events.some((e) => e.type === 'file.read') || undefined;
    }, 10_000, 'the transfer events');
    assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/${sb.id}`)).statusCode, 200);

    const text = await body; // Ends by itself once the sandbox has ended.
    const events = text.trim().split('\n').map((line) => JSON.parse(line) as WireEvent);
    const statuses = events.filter((e) => e.type === 'sandbox.status').map((e) => e.data.to);
    assert.deepEqual(statuses, ['PROVISIONING', 'RUNNING', 'TERMINATED']);
    assert.equal(events[0]?.type, 'sandbox.created');
    assert.equal(events.at(-1)?.data.reason, 'deleted');
    const execEvent = events.find((e) => e.type === 'exec');
    assert.ok(execEvent);
    assert.equal(execEvent.data.exitCode, 0);
    assert.equal(typeof execEvent.data.durationMs, 'number');
    assert.ok(Buffer.byteLength(String(execEvent.data.command)) <= 1024, 'command cut to 1 KiB');
    assert.ok(execEvent.actor?.userId);
    assert.deepEqual(execEvent.data.envNames, ['EXTRA']);
    const uploadEvent = events.find((e) => e.type === 'file.upload');
    assert.deepEqual({ path: uploadEvent?.data.path, bytes: uploadEvent?.data.bytes }, { path: '/tmp/f.txt', bytes: 24 });
    for (const forbidden of [SECRET, ENV_VALUE, 'exec-env-value-99', 'FILE-CONTENT-MARKER']) assert.ok(!text.includes(forbidden), `events hold ${forbidden}`);
    const ids = events.map((e) => e.id);
    assert.deepEqual([...ids].sort(), ids, 'ids in order');
  });
});

import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { type IncomingHttpHeaders, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PausableRuntime, type TestServer, eventually, startTestServer } from '@corral/server/testing';
import { CorralClient } from './client.js';
import { NotFoundError, ValidationError } from './errors.js';
import { Sandbox } from './sandbox.js';
import { type ListeningServer, TEST_IMAGE, dockerMissing, needDocker, startServer } from './testing/sdk-test-support.js';
import { WebhookVerificationError, verifyWebhook } from './webhook-verify.js';

/** One POST a receiver got. */
interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What a delivery's body holds. */
interface Payload {
  type: string;
  eventId: string;
  sandboxId?: string;
  data: Record<string, unknown>;
}

/** A real HTTP server on loopback that records POSTs; answers 500 to a path while its `failures` count is above 0 (counting down), and 503 while `down`. */
async function startReceiver(): Promise<{ url: string; received: Received[]; failures: Record<string, number>; down: boolean; close(): Promise<void> }> {
  const state = {
    url: '',
    received: [] as Received[],
    failures: {} as Record<string, number>,
    down: false,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (state.down) {
        res.writeHead(503).end();
        return;
      }
      const path = req.url ?? '';
      if ((state.failures[path] ?? 0) > 0) {
        state.failures[path] = (state.failures[path] ?? 0) - 1;
        res.writeHead(500).end('not now');
        return;
      }
      state.received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  server.unref();
  return state;
}

function sign(secret: string, id: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

const payloads = (received: readonly Received[], path: string): Payload[] => received.filter((r) => r.path === path).map((r) => JSON.parse(r.body) as Payload);

describe('webhooks against a real server (pausable runtime)', { timeout: 120_000 }, () => {
  let t: TestServer;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let apiUrl: string;
  before(async () => {
    const runtime = new PausableRuntime();
    runtime.openAll();
    receiver = await startReceiver();
    t = await startTestServer({ instanceId: `sdk-webhooks-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000, webhookAllowPrivate: true, webhookRetryBaseMs: 100 }, {}, { runtime });
    apiUrl = await t.server.listen();
  });
  after(async () => {
    await t?.close();
    await receiver?.close();
  });

  it("retries a failing receiver, records every attempt, and sends only the owner's events of the chosen types", async () => {
    const alice = await t.createUser('webhook-alice');
    const bob = await t.createUser('webhook-bob');
    const asAlice = new CorralClient({ apiUrl, apiKey: alice.key });
    const asBob = new CorralClient({ apiUrl, apiKey: bob.key });
    const hook = await asAlice.webhooks.create({ url: `${receiver.url}/alice`, event_types: ['sandbox.status'] });
    assert.match(hook.secret, /^whsec_/);
    assert.deepEqual(hook.eventTypes, ['sandbox.status']);
    await asBob.webhooks.create({ url: `${receiver.url}/bob`, event_types: ['*'] });
    // Listings never show the secret; another user's endpoint is not found.
    const listed = await asAlice.webhooks.list();
    assert.deepEqual(listed.webhooks.map((w) => w.id), [hook.id]);
    assert.ok(!JSON.stringify(listed).includes(hook.secret));
    await assert.rejects(asBob.webhooks.deliveries(hook.id), NotFoundError);
    await assert.rejects(asBob.webhooks.delete(hook.id), NotFoundError);
    await assert.rejects(asAlice.webhooks.create({ url: `${receiver.url}/x`, event_types: ['nosuch.event'] }), ValidationError);

    receiver.failures['/alice'] = 2;
    const bobs = await Sandbox.create(asBob, { image: 'busybox:latest' });
    const sandbox = await Sandbox.create(asAlice, { image: 'busybox:latest' });
    // The pausable runtime runs no command: wait for the status, not for an exec.
    await eventually(async () => ((await sandbox.refresh()).status === 'RUNNING' ? true : undefined), 60_000, 'RUNNING');
    await sandbox.delete();
    await bobs.delete();

    const got = await eventually(() => {
      const mine = payloads(receiver.received, '/alice');
      // Retried deliveries may arrive after later ones: wait for all three.
      return new Set(mine.map((p) => p.data.to)).size >= 3 ? mine : undefined;
    }, 60_000, 'three status deliveries');
    for (const r of receiver.received.filter((x) => x.path === '/alice')) verifyWebhook(hook.secret, r.headers, r.body);
    assert.ok(got.every((p) => p.type === 'sandbox.status' && p.sandboxId === sandbox.id), 'only status events of her own sandbox');
    assert.deepEqual(new Set(got.map((p) => p.data.to)), new Set(['PROVISIONING', 'RUNNING', 'TERMINATED']));
    const bobGot = await eventually(() => {
      const his = payloads(receiver.received, '/bob');
      return his.some((p) => p.data.to === 'TERMINATED') ? his : undefined;
    }, 60_000, "bob's TERMINATED delivery");
    assert.ok(bobGot.every((p) => p.sandboxId === bobs.id), "bob's endpoint gets only his sandbox's events");
    assert.ok(bobGot.some((p) => p.type === 'sandbox.created'));

    // Two 500s went to the first deliveries attempted: some delivery shows the failed attempts and the success.
    const { deliveries } = await asAlice.webhooks.deliveries(hook.id);
    assert.equal(deliveries.length, 3);
    assert.ok(deliveries.every((d) => d.status === 'delivered' && d.nextAttemptAt === null && d.deliveredAt !== null));
    const retried = deliveries.filter((d) => d.attempts > 1);
    assert.ok(retried.length >= 1, JSON.stringify(deliveries));
    assert.equal(deliveries.reduce((n, d) => n + d.attempts, 0), 3 + 2);
    for (const d of retried) {
      assert.equal(d.attemptLog.length, d.attempts);
      assert.deepEqual(d.attemptLog.map((a) => a.statusCode).slice(-1), [204]);
      assert.ok(d.attemptLog.slice(0, -1).every((a) => a.statusCode === 500 && a.error !== null));
    }
    // Retries keep the delivery's id: the receiver saw it once per attempt that got through.
    const ids = receiver.received.filter((r) => r.path === '/alice').map((r) => r.headers['corral-webhook-id']);
    assert.deepEqual(new Set(ids), new Set(deliveries.map((d) => d.id)));

    const metrics = await t.request('GET', '/metrics');
    assert.match(metrics.body, /corral_webhook_deliveries_total\{result="retrying"\} [2-9]/);
    assert.match(metrics.body, /corral_webhook_delivery_duration_seconds_count\{outcome="success"\} \d/);

    // A test delivery, whatever the event types; then the endpoint goes with its deliveries.
    const test = await asAlice.webhooks.test(hook.id);
    assert.equal(test.eventType, 'webhook.test');
    await eventually(() => payloads(receiver.received, '/alice').find((p) => p.type === 'webhook.test'), 30_000, 'the test delivery');
    await asAlice.webhooks.delete(hook.id);
    assert.deepEqual((await asAlice.webhooks.list()).webhooks, []);
    await assert.rejects(asAlice.webhooks.deliveries(hook.id), NotFoundError);
  });

  it("a team admin's endpoint gets the team's sandboxes' events; a member cannot register one; personal endpoints do not get team sandboxes", async () => {
    const admin = new CorralClient({ apiUrl, apiKey: t.adminKey });
    const lead = await t.createUser('webhook-team-lead');
    const member = await t.createUser('webhook-team-member');
    const team = await admin.teams.create(`webhooks-${randomBytes(3).toString('hex')}`);
    await admin.teams.setMember(team.id, lead.id, 'admin');
    await admin.teams.setMember(team.id, member.id, 'member');
    const asLead = new CorralClient({ apiUrl, apiKey: lead.key });
    const asMember = new CorralClient({ apiUrl, apiKey: member.key });
    await assert.rejects(asMember.webhooks.create({ url: `${receiver.url}/nope`, event_types: ['*'], team_id: team.id }), ValidationError);
    const teamHook = await asLead.webhooks.create({ url: `${receiver.url}/team`, event_types: ['sandbox.created'], team_id: team.id });
    assert.equal(teamHook.teamId, team.id);
    await asMember.webhooks.create({ url: `${receiver.url}/member-personal`, event_types: ['*'] });
    // The member sees no team endpoint (not an admin); the lead does.
    assert.deepEqual((await asMember.webhooks.list()).webhooks.map((w) => w.teamId), [null]);
    assert.ok((await asLead.webhooks.list()).webhooks.some((w) => w.id === teamHook.id));

    const teamSandbox = await Sandbox.create(asMember, { image: 'busybox:latest', teamId: team.id });
    const personal = await Sandbox.create(asMember, { image: 'busybox:latest' });
    const got = await eventually(() => payloads(receiver.received, '/team')[0], 30_000, 'the team delivery');
    verifyWebhook(teamHook.secret, (receiver.received.find((r) => r.path === '/team') as Received).headers, (receiver.received.find((r) => r.path === '/team') as Received).body);
    assert.equal(got.sandboxId, teamSandbox.id);
    await eventually(() => payloads(receiver.received, '/member-personal').find((p) => p.type === 'sandbox.created'), 30_000, 'the personal delivery');
    await teamSandbox.delete();
    await personal.delete();
    await eventually(() => payloads(receiver.received, '/member-personal').find((p) => p.data.to === 'TERMINATED'), 30_000, 'the personal TERMINATED delivery');
    assert.deepEqual(new Set(payloads(receiver.received, '/member-personal').map((p) => p.sandboxId)), new Set([personal.id]));
    assert.deepEqual(payloads(receiver.received, '/team').map((p) => p.sandboxId), [teamSandbox.id]);
  });
});

describe('webhook URLs and addresses', { timeout: 60_000 }, () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ instanceId: `sdk-webhooks-private-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000, webhookRetryBaseMs: 100 });
  });
  after(async () => t?.close());

  it('refuses non-http(s), loopback, private, link-local and metadata URLs unless allowed, and checks the address again at delivery', async () => {
    for (const url of ['ftp://example.com/', 'http://127.0.0.1:9/', 'http://localhost:9/', 'http://[::1]/', 'http://10.1.2.3/', 'http://192.168.0.1/', 'http://169.254.169.254/latest/meta-data', 'http://[fd00:ec2::254]/', 'http://user:pw@example.com/', 'not a url']) {
      const created = await t.request('POST', '/api/v1/webhooks', { body: { url, event_types: ['*'] } });
      assert.equal(created.statusCode, 422, `${url}: ${created.body}`);
      assert.equal(created.json<{ code: string }>().code, 'VALIDATION_FAILED');
    }
    // An endpoint whose name resolves to loopback by the time of the delivery (DNS rebinding) gets nothing.
    const receiver = await startReceiver();
    try {
      const port = new URL(receiver.url).port;
      const { id: userId, key } = await t.createUser('rebinding');
      const id = `rebind-${randomBytes(4).toString('hex')}`;
      await t.server.store.insertWebhookEndpoint({ id, userId, teamId: null, url: `http://localhost:${port}/`, eventTypes: ['*'], secret: 'whsec_AAAA', enabled: true, createdAt: new Date().toISOString() });
      assert.equal((await t.request('POST', `/api/v1/webhooks/${id}/test`, { key })).statusCode, 202);
      const failed = await eventually(async () => {
        const { deliveries } = (await t.request('GET', `/api/v1/webhooks/${id}/deliveries`, { key })).json<{ deliveries: Array<{ attempts: number; lastError: string | null }> }>();
        return deliveries[0]?.attempts ? deliveries[0] : undefined;
      }, 30_000, 'the refused attempt');
      assert.match(failed.lastError ?? '', /loopback, private or link-local/);
      assert.deepEqual(receiver.received, []);
    } finally {
      await receiver.close();
    }
  });
});

describe('webhook deliveries survive a restart', { timeout: 60_000 }, () => {
  it('a pending delivery left by a stopped server is delivered by the next one', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'corral-webhooks-restart-'));
    const receiver = await startReceiver();
    const instanceId = `sdk-webhooks-restart-${randomBytes(4).toString('hex')}`;
    const settings = { dataDir, instanceId, reconcileIntervalMs: 60_000, webhookAllowPrivate: true, webhookRetryBaseMs: 1_000 };
    try {
      receiver.down = true;
      const first = await startTestServer(settings);
      const hook = (await first.request('POST', '/api/v1/webhooks', { body: { url: `${receiver.url}/hook`, event_types: ['sandbox.created'] } })).json<{ id: string; secret: string }>();
      const created = await first.request('POST', '/api/v1/sandbox', { body: { name: 'restart', docker_image: 'busybox', cpu_cores: 1, memory_gb: 1, disk_size_gb: 1 } });
      assert.equal(created.statusCode, 201, created.body);
      const sandboxId = created.json<{ id: string }>().id;
      await eventually(async () => {
        const { deliveries } = (await first.request('GET', `/api/v1/webhooks/${hook.id}/deliveries`)).json<{ deliveries: Array<{ attempts: number; lastStatusCode: number | null }> }>();
        return deliveries[0]?.lastStatusCode === 503 ? true : undefined;
      }, 30_000, 'a failed first attempt');
      await first.close();

      receiver.down = false;
      const second = await startTestServer({ ...settings, bootstrapApiKey: first.adminKey });
      try {
        const got = await eventually(() => receiver.received[0], 30_000, 'the delivery after the restart');
        const body = verifyWebhook(hook.secret, got.headers, got.body) as Payload;
        assert.deepEqual({ type: body.type, sandboxId: body.sandboxId }, { type: 'sandbox.created', sandboxId });
        const { deliveries } = (await second.request('GET', `/api/v1/webhooks/${hook.id}/deliveries`)).json<{ deliveries: Array<{ status: string; attempts: number; attemptLog: Array<{ statusCode: number | null }> }> }>();
        assert.equal(deliveries.length, 1);
        assert.equal(deliveries[0]?.status, 'delivered');
        assert.deepEqual(deliveries[0]?.attemptLog.map((a) => a.statusCode).slice(-1), [204]);
        assert.ok(deliveries[0]?.attemptLog.slice(0, -1).every((a) => a.statusCode === 503));
      } finally {
        await second.close();
      }
    } finally {
      await receiver.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

const missing = dockerMissing();
describe('webhooks for a real sandbox (docker driver)', { timeout: 300_000 }, () => {
  let server: ListeningServer | undefined;
  after(async () => server?.close());

  it('delivers signed events for create → running → exec → deleted; a tampered body and an old timestamp are refused', async (t) => {
    if (!needDocker(t)) return;
    assert.equal(missing, undefined);
    server = await startServer({ webhookAllowPrivate: true, webhookRetryBaseMs: 200 });
    const receiver = await startReceiver();
    try {
      const client = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey });
      const hook = await client.webhooks.create({ url: `${receiver.url}/life`, event_types: ['*'] });
      const sandbox = await Sandbox.create(client, { image: TEST_IMAGE });
      await sandbox.waitUntilRunning({ timeoutMs: 240_000 });
      assert.equal((await sandbox.exec('echo webhook-exec')).stdout.trim(), 'webhook-exec');
      await sandbox.delete();
      const life = await eventually(() => {
        const got = payloads(receiver.received, '/life');
        return got.some((p) => p.data.to === 'TERMINATED') ? got : undefined;
      }, 120_000, 'the TERMINATED delivery');
      const verified = receiver.received.map((r) => verifyWebhook(hook.secret, r.headers, r.body) as Payload);
      assert.equal(verified.length, life.length);
      assert.ok(life.every((p) => p.sandboxId === sandbox.id));
      const kinds = life.map((p) => (p.type === 'sandbox.status' ? `status:${String(p.data.to)}` : p.type));
      for (const kind of ['sandbox.created', 'status:PROVISIONING', 'status:RUNNING', 'exec', 'status:TERMINATED']) assert.ok(kinds.includes(kind), `${kind} in ${kinds.join(', ')}`);
      assert.ok(life.some((p) => p.type === 'exec' && p.data.command === 'echo webhook-exec' && p.data.exitCode === 0));

      const sample = receiver.received[0] as Received;
      assert.throws(() => verifyWebhook(hook.secret, sample.headers, sample.body.replace('"type":"', '"type":"x')), WebhookVerificationError);
      assert.throws(() => verifyWebhook(`whsec_${randomBytes(32).toString('base64')}`, sample.headers, sample.body), WebhookVerificationError);
      // A replay: correctly signed, but ten minutes old.
      const id = String(sample.headers['corral-webhook-id']);
      const old = Math.floor(Date.now() / 1000) - 600;
      const replay = { 'corral-webhook-id': id, 'corral-webhook-timestamp': String(old), 'corral-webhook-signature': sign(hook.secret, id, old, sample.body) };
      assert.throws(() => verifyWebhook(hook.secret, replay, sample.body), /tolerance/);
      assert.ok(verifyWebhook(hook.secret, replay, sample.body, 3_600));
    } finally {
      await receiver.close();
    }
  });
});

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { eventually } from '../testing/runtime-available.js';
import { SandboxEvents } from './sandbox-events.js';
import { openStore } from '../store/open-store.js';
import { startTestServer } from '../testing/test-server.js';
import { CorralMetrics } from './corral-metrics.js';
import { WebhookDelivery, retryDelayMs } from './webhook-delivery.js';

describe('webhook delivery', () => {
  it('backs off exponentially with ±20 % jitter, capped at an hour', () => {
    assert.equal(retryDelayMs(1, 1_000, () => 0.5), 1_000);
    assert.equal(retryDelayMs(4, 1_000, () => 0.5), 8_000);
    assert.equal(retryDelayMs(4, 1_000, () => 0), 6_400);
    assert.equal(retryDelayMs(4, 1_000, () => 1), 9_600);
    assert.equal(retryDelayMs(40, 1_000, () => 0.5), 3_600_000);
  });

  it('drops (and counts) events past its queue bound without touching the store', async () => {
    const store = await openStore({ kind: 'sqlite', path: ':memory:' });
    const metrics = new CorralMetrics({ processMetrics: false });
    const delivery = new WebhookDelivery(store, { replicaId: 'r', allowPrivate: false, timeoutMs: 1_000, maxAttempts: 3, retryBaseMs: 100, maxQueued: 2, retentionMs: 3_600_000 }, pino({ level: 'silent' }), metrics);
    const event = (id: string) => ({ id, sandboxId: 'nosuch', at: new Date().toISOString(), type: 'exec' as const, actor: null, data: {} });
    delivery.enqueue([event('a'), event('b'), event('c')]);
    assert.equal((await metrics.webhookEventsDropped.get()).values.find((v) => v.labels.reason === 'queue_full')?.value, 3);
    delivery.enqueue([event('d')]);
    await delivery.close();
    assert.equal((await metrics.webhookEventsDropped.get()).values.find((v) => v.labels.reason === 'queue_full')?.value, 3);
    await store.close();
  });

  it("deleting a user deletes their personal endpoints, not their team's", async () => {
    const t = await startTestServer();
    try {
      const user = await t.createUser('webhook-gone');
      const team = await t.request('POST', '/api/v1/teams', { body: { name: 'webhook-gone-team' } });
      const teamId = team.json<{ id: string }>().id;
      assert.equal((await t.request('PUT', `/api/v1/teams/${teamId}/members/${user.id}`, { body: { role: 'admin' } })).statusCode, 200);
      const store = t.server.store;
      const base = { userId: user.id, url: 'https://example.com/', eventTypes: ['*'], secret: 'whsec_AAAA', enabled: true, createdAt: new Date().toISOString() };
      await store.insertWebhookEndpoint({ ...base, id: 'personal-hook', teamId: null });
      await store.insertWebhookEndpoint({ ...base, id: 'team-hook', teamId });
      assert.equal((await t.request('DELETE', `/api/v1/users/${user.id}`)).statusCode, 200);
      assert.equal(await store.getWebhookEndpoint('personal-hook'), undefined);
      assert.equal((await store.getWebhookEndpoint('team-hook'))?.teamId, teamId);
    } finally {
      await t.close();
    }
  });

  it('two replicas on one store attempt each delivery once: claims are compare-and-set', async () => {
    const store = await openStore({ kind: 'sqlite', path: ':memory:' });
    const log = pino({ level: 'silent' });
    const seen = new Map<string, number>();
    // A slow receiver, so both replicas have attempts in flight at once.
    const receiver = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const id = String(req.headers['corral-webhook-id']);
        seen.set(id, (seen.get(id) ?? 0) + 1);
        setTimeout(() => res.writeHead(200).end(), 30);
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const events = new SandboxEvents(store, log);
    const replicas = ['replica-a', 'replica-b'].map(
      (replicaId) => new WebhookDelivery(store, { replicaId, allowPrivate: true, timeoutMs: 5_000, maxAttempts: 3, retryBaseMs: 100, pollMs: 10, retentionMs: 3_600_000 }, log),
    );
    try {
      const now = new Date().toISOString();
      await store.insertWebhookEndpoint({ id: 'hook', userId: 'u', teamId: null, url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`, eventTypes: ['*'], secret: 'whsec_AAAA', enabled: true, createdAt: now });
      const ids = Array.from({ length: 60 }, (_, i) => `whd_${String(i).padStart(3, '0')}`);
      await store.insertWebhookDeliveries(
        ids.map((id) => ({ id, endpointId: 'hook', eventId: id, eventType: 'exec', payload: '{}', status: 'pending', attempts: 0, attemptLog: [], lastStatusCode: null, lastError: null, nextAttemptAt: now, claimedBy: null, deliveredAt: null, createdAt: now })),
      );
      for (const replica of replicas) replica.start(events);
      await eventually(async () => ((await store.listWebhookDeliveries('hook', 100)).every((d) => d.status === 'delivered') ? true : undefined), 60_000, 'every delivery delivered');
      assert.deepEqual([...seen.keys()].sort(), ids);
      assert.ok([...seen.values()].every((n) => n === 1), 'each delivery was attempted once');
      assert.ok((await store.listWebhookDeliveries('hook', 100)).every((d) => d.attempts === 1 && d.claimedBy === null));
    } finally {
      for (const replica of replicas) await replica.close();
      await events.close();
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
      await store.close();
    }
  });
});

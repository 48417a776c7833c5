import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
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
    const delivery = new WebhookDelivery(store, { replicaId: 'r', allowPrivate: false, timeoutMs: 1_000, maxAttempts: 3, retryBaseMs: 100, maxQueued: 2 }, pino({ level: 'silent' }), metrics);
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
});

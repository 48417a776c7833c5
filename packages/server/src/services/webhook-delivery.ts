import type { Logger } from 'pino';
import type { SandboxEventRecord } from '../records/event-records.js';
import type { SandboxRecord } from '../records/sandbox-records.js';
import type { WebhookAttemptRecord, WebhookDeliveryRecord, WebhookEndpointRecord } from '../records/webhook-records.js';
import type { Store } from '../store/store.js';
import { newId } from '../util/ids.js';
import { signWebhook } from '../util/webhook-signature.js';
import type { CorralMetrics } from './corral-metrics.js';
import type { SandboxEvents } from './sandbox-events.js';
import { postWebhook } from './webhook-url.js';

/** Events waiting to be turned into deliveries before new ones are dropped (`corral_webhook_events_dropped_total`). */
const DEFAULT_MAX_QUEUED = 10_000;
/** Attempts one replica makes at once. */
const CONCURRENCY = 16;
/** Due deliveries read per pass. */
const BATCH = 100;
/** The longest wait between retries. */
const MAX_BACKOFF_MS = 3_600_000;
/** Error texts kept per attempt. */
const ERROR_MAX = 300;

/** What the worker is set up with. */
export interface WebhookDeliveryOptions {
  /** This replica's id: its claims on deliveries carry it. */
  replicaId: string;
  allowPrivate: boolean;
  timeoutMs: number;
  maxAttempts: number;
  retryBaseMs: number;
  /** How often the store is read for due deliveries (retries, other replicas', those left by a restart); default 1 000 ms. */
  pollMs?: number;
  /** Events queued at most (default 10 000). */
  maxQueued?: number;
  /** Delivered and failed deliveries are deleted this long after their creation (the sandboxes' retention). */
  retentionMs: number;
}

/** How often finished deliveries past their retention are purged. */
const PURGE_INTERVAL_MS = 600_000;

/** The wait before attempt `attempt + 1` after `attempt` failed: `base × 2^(attempt−1)`, ±20 % jitter, at most an hour. */
export function retryDelayMs(attempt: number, baseMs: number, random = Math.random): number {
  const exponential = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exponential * (0.8 + 0.4 * random()));
}

/** The JSON body of a sandbox event's delivery: the event as `GET /sandbox/{id}/events` shows it, and its sandbox's owner. */
function eventPayload(event: SandboxEventRecord, sandbox: SandboxRecord): string {
  return JSON.stringify({
    type: event.type,
    eventId: event.id,
    sandboxId: event.sandboxId,
    at: event.at,
    actor: event.actor,
    data: event.data,
    sandbox: { id: sandbox.id, name: sandbox.name, userId: sandbox.userId, teamId: sandbox.teamId },
  });
}

function wants(endpoint: WebhookEndpointRecord, type: string): boolean {
  return endpoint.eventTypes.includes('*') || endpoint.eventTypes.includes(type);
}

/**
 * Delivers sandbox events to webhook endpoints. Stored events (`SandboxEvents.onWritten`) go to a
 * bounded in-memory queue (the event writer never waits; a full queue drops events, counted); a
 * background step turns them into delivery rows in the store, one per event and endpoint of the
 * sandbox's owner (the user's own endpoints for a personal sandbox, the team's for a team's).
 *
 * Due deliveries are read from the store (so a restart, or another replica, picks up what is
 * pending), each claimed by compare-and-set before its attempt: one replica attempts a delivery at
 * a time. An attempt POSTs the fixed body with `corral-webhook-id` (the delivery id, the same on
 * every retry), `corral-webhook-timestamp` and `corral-webhook-signature`; a 2xx delivers it, anything
 * else is retried with exponential backoff and jitter until `maxAttempts`, then it has failed.
 * Every attempt is recorded on the delivery.
 */
export class WebhookDelivery {
  private queue: SandboxEventRecord[] = [];
  private pumping: Promise<void> | null = null;
  private passing: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly maxQueued: number;
  private closed = false;
  private lastPurge = 0;

  constructor(
    private readonly store: Store,
    private readonly options: WebhookDeliveryOptions,
    private readonly log: Logger,
    private readonly metrics?: CorralMetrics,
  ) {
    this.maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED;
  }

  /** Listens to stored events and starts reading due deliveries. */
  start(events: SandboxEvents): void {
    this.unsubscribe = events.onWritten((batch) => this.enqueue(batch));
    const poll = (): void => {
      this.kick();
      this.timer = setTimeout(poll, this.options.pollMs ?? 1_000);
      this.timer.unref();
    };
    poll();
  }

  /** Queues stored events for delivery; never waits. */
  enqueue(batch: readonly SandboxEventRecord[]): void {
    if (this.closed || batch.length === 0) return;
    if (this.queue.length + batch.length > this.maxQueued) {
      this.metrics?.webhookEventsDropped.inc({ reason: 'queue_full' }, batch.length);
      return;
    }
    this.queue.push(...batch);
    this.pumping ??= this.pump().finally(() => {
      this.pumping = null;
    });
  }

  /** Turns queued events into delivery rows, then looks for due deliveries. */
  private async pump(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, 500);
      try {
        await this.createDeliveries(batch);
      } catch (error) {
        this.metrics?.webhookEventsDropped.inc({ reason: 'store_failed' }, batch.length);
        this.log.warn({ err: error, events: batch.length }, 'webhooks: could not store deliveries; these events are not delivered');
      }
    }
    this.kick();
  }

  private async createDeliveries(batch: readonly SandboxEventRecord[]): Promise<void> {
    const sandboxes = new Map((await this.store.getSandboxes([...new Set(batch.map((e) => e.sandboxId))])).map((s) => [s.id, s]));
    const userIds = new Set<string>();
    const teamIds = new Set<string>();
    for (const s of sandboxes.values()) {
      if (s.teamId === null) userIds.add(s.userId);
      else teamIds.add(s.teamId);
    }
    const endpoints = await this.store.findWebhookEndpoints([...userIds], [...teamIds]);
    if (endpoints.length === 0) return;
    const now = new Date().toISOString();
    const rows: WebhookDeliveryRecord[] = [];
    for (const event of batch) {
      const sandbox = sandboxes.get(event.sandboxId);
      if (!sandbox) continue;
      // A sandbox's events go to its owner's endpoints only: the team's, or the user's own.
      const owners = endpoints.filter((e) => (sandbox.teamId === null ? e.teamId === null && e.userId === sandbox.userId : e.teamId === sandbox.teamId));
      for (const endpoint of owners) {
        if (!wants(endpoint, event.type)) continue;
        rows.push(this.newDelivery(endpoint.id, event.id, event.type, eventPayload(event, sandbox), now));
      }
    }
    await this.store.insertWebhookDeliveries(rows);
  }

  private newDelivery(endpointId: string, eventId: string, eventType: string, payload: string, now: string): WebhookDeliveryRecord {
    return {
      id: `whd_${newId()}`,
      endpointId,
      eventId,
      eventType,
      payload,
      status: 'pending',
      attempts: 0,
      attemptLog: [],
      lastStatusCode: null,
      lastError: null,
      nextAttemptAt: now,
      claimedBy: null,
      deliveredAt: null,
      createdAt: now,
    };
  }

  /** Stores a `webhook.test` delivery for the endpoint and starts its attempt. */
  async sendTest(endpoint: WebhookEndpointRecord): Promise<WebhookDeliveryRecord> {
    const now = new Date().toISOString();
    const eventId = `test_${newId()}`;
    const payload = JSON.stringify({ type: 'webhook.test', eventId, at: now, webhookId: endpoint.id, data: { message: 'A test delivery from Corral' } });
    const delivery = this.newDelivery(endpoint.id, eventId, 'webhook.test', payload, now);
    await this.store.insertWebhookDeliveries([delivery]);
    this.kick();
    return delivery;
  }

  /** Starts a pass over due deliveries (or another one after the pass in progress). */
  kick(): void {
    if (this.closed) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    this.passing = this.pass()
      .catch((error: unknown) => this.log.warn({ err: error }, 'webhooks: reading due deliveries failed'))
      .finally(() => {
        this.passing = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async pass(): Promise<void> {
    if (Date.now() - this.lastPurge >= PURGE_INTERVAL_MS) {
      this.lastPurge = Date.now();
      await this.store.purgeWebhookDeliveries(new Date(Date.now() - this.options.retentionMs).toISOString(), 10_000);
    }
    const free = CONCURRENCY - this.inFlight.size;
    if (free <= 0) return;
    const now = new Date().toISOString();
    for (const id of await this.store.dueWebhookDeliveries(now, Math.min(BATCH, free))) {
      if (this.closed || this.inFlight.size >= CONCURRENCY) return;
      // The hold outlasts the attempt; a replica that dies holding it leaves it to others after that.
      const holdUntil = new Date(Date.now() + this.options.timeoutMs + 30_000).toISOString();
      const claimed = await this.store.claimWebhookDelivery(id, this.options.replicaId, now, holdUntil);
      if (!claimed) continue;
      const attempt = this.attempt(claimed)
        .catch((error: unknown) => this.log.warn({ err: error, delivery: id }, 'webhooks: recording an attempt failed'))
        .finally(() => {
          this.inFlight.delete(attempt);
          if (!this.closed) this.kick();
        });
      this.inFlight.add(attempt);
    }
  }

  private async attempt(delivery: WebhookDeliveryRecord): Promise<void> {
    const endpoint = await this.store.getWebhookEndpoint(delivery.endpointId);
    if (!endpoint) return; // Deleted with its deliveries.
    const started = Date.now();
    const timestamp = Math.floor(started / 1000);
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      const result = await postWebhook(
        endpoint.url,
        {
          'corral-webhook-id': delivery.id,
          'corral-webhook-timestamp': String(timestamp),
          'corral-webhook-signature': signWebhook(endpoint.secret, delivery.id, timestamp, delivery.payload),
        },
        delivery.payload,
        { allowPrivate: this.options.allowPrivate, timeoutMs: this.options.timeoutMs },
      );
      statusCode = result.statusCode;
      if (statusCode < 200 || statusCode > 299) error = `the receiver answered ${statusCode}`;
    } catch (failure) {
      error = (failure instanceof Error ? failure.message : String(failure)).slice(0, ERROR_MAX);
    }
    const durationMs = Date.now() - started;
    const ok = error === null;
    this.metrics?.webhookDeliverySeconds.observe({ outcome: ok ? 'success' : 'failure' }, durationMs / 1000);
    const entry: WebhookAttemptRecord = { at: new Date(started).toISOString(), durationMs, statusCode, error };
    const attempts = delivery.attempts + 1;
    const result = ok ? 'delivered' : attempts >= this.options.maxAttempts ? 'failed' : 'retrying';
    this.metrics?.webhookDeliveries.inc({ result });
    const done = new Date().toISOString();
    await this.store.updateWebhookDelivery(
      delivery.id,
      {
        status: result === 'retrying' ? 'pending' : result,
        attempts,
        attemptLog: [...delivery.attemptLog, entry],
        lastStatusCode: statusCode,
        lastError: error,
        nextAttemptAt: result === 'retrying' ? new Date(Date.now() + retryDelayMs(attempts, this.options.retryBaseMs)).toISOString() : done,
        claimedBy: null,
        deliveredAt: ok ? done : null,
      },
      this.options.replicaId,
    );
  }

  /** Stops taking events, stores the deliveries of those queued, and waits for attempts in flight. */
  async close(): Promise<void> {
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    await this.pumping;
    this.closed = true;
    await this.passing;
    await Promise.allSettled([...this.inFlight]);
  }
}

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FairScheduler, type Release, type SlotOwner } from './fair-scheduler.js';
import { GatewayError } from '../errors/gateway-error.js';

const A1: SlotOwner = { userId: 'a', sandboxId: 'a1' };
const A2: SlotOwner = { userId: 'a', sandboxId: 'a2' };
const B1: SlotOwner = { userId: 'b', sandboxId: 'b1' };
const limits = (over: Partial<FairScheduler['limits']> = {}): FairScheduler['limits'] => ({ global: 4, perUser: 4, perSandbox: 4, maxQueuedPerUser: 10_000, ...over });

/** Lets granted promises settle. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('FairScheduler', () => {
  it('never runs more than its global limit and serves one sandbox in order', async () => {
    const slots = new FairScheduler('exec', limits({ global: 3 }));
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        slots.run(A1, async () => {
          order.push(i);
          running++;
          peak = Math.max(peak, running);
          await new Promise((resolve) => setTimeout(resolve, 2));
          running--;
        }),
      ),
    );
    assert.equal(peak, 3);
    assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => i));
    assert.equal(slots.inUse, 0);
  });

  it('bounds a sandbox by its CPU cores (perCpu) and serves its waiters in order', async () => {
    const slots = new FairScheduler('exec', limits({ global: 100, perUser: 100, perSandbox: 32, perCpu: 4 }));
    const small: SlotOwner = { userId: 'a', sandboxId: 'one-core', cpuCores: 1 };
    const half: SlotOwner = { userId: 'a', sandboxId: 'half-core', cpuCores: 0.1 };
    const big: SlotOwner = { userId: 'b', sandboxId: 'sixteen-cores', cpuCores: 16 };
    assert.equal(slots.sandboxLimit(small), 4);
    assert.equal(slots.sandboxLimit(half), 1);
    assert.equal(slots.sandboxLimit(big), 32);
    const peaks = new Map<string, number>();
    const running = new Map<string, number>();
    const order: number[] = [];
    const work = (owner: SlotOwner, i: number): Promise<void> =>
      slots.run(owner, async () => {
        if (owner === small) order.push(i);
        running.set(owner.sandboxId, (running.get(owner.sandboxId) ?? 0) + 1);
        peaks.set(owner.sandboxId, Math.max(peaks.get(owner.sandboxId) ?? 0, running.get(owner.sandboxId) ?? 0));
        await new Promise((resolve) => setTimeout(resolve, 2));
        running.set(owner.sandboxId, (running.get(owner.sandboxId) ?? 0) - 1);
      });
    await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => work(small, i)),
      ...Array.from({ length: 5 }, (_, i) => work(half, i)),
      ...Array.from({ length: 40 }, (_, i) => work(big, i)),
    ]);
    assert.equal(peaks.get('one-core'), 4);
    assert.equal(peaks.get('half-core'), 1);
    assert.equal(peaks.get('sixteen-cores'), 32);
    assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => i));
    assert.equal(slots.inUse, 0);
    assert.equal(slots.queued, 0);
  });

  it('without perCpu, or for an owner without cores, perSandbox alone bounds a sandbox', () => {
    const slots = new FairScheduler('exec', limits({ perSandbox: 7 }));
    assert.equal(slots.sandboxLimit({ userId: 'a', sandboxId: 'x', cpuCores: 1 }), 7);
    const perCpu = new FairScheduler('exec', limits({ perSandbox: 7, perCpu: 2 }));
    assert.equal(perCpu.sandboxLimit({ userId: 'a', sandboxId: 'x' }), 7);
  });

  it('drops a waiter whose signal aborts', async () => {
    const slots = new FairScheduler('exec', limits({ global: 1 }));
    const release = await slots.acquire(A1);
    const controller = new AbortController();
    const waiting = slots.acquire(A1, controller.signal);
    assert.equal(slots.queued, 1);
    controller.abort(new Error('gone'));
    await assert.rejects(waiting, /gone/);
    assert.equal(slots.queued, 0);
    release();
    assert.equal(slots.inUse, 0);
  });

  it('holds the per-user and per-sandbox limits', async () => {
    const slots = new FairScheduler('exec', limits({ global: 100, perUser: 3, perSandbox: 2 }));
    const held: Release[] = [];
    const granted: string[] = [];
    for (const owner of [A1, A1, A1, A2, A2, B1, B1, B1]) {
      void slots.acquire(owner).then((release) => {
        held.push(release);
        granted.push(owner.sandboxId);
      });
    }
    await settle();
    // a1 stops at 2 (per sandbox), a at 3 (per user), b1 at 2 (per sandbox).
    assert.deepEqual(granted.sort(), ['a1', 'a1', 'a2', 'b1', 'b1']);
    assert.equal(slots.heldBy('a'), 3);
    assert.equal(slots.queued, 3);
    for (const release of held.splice(0)) release();
    await settle();
    assert.equal(slots.queued, 0);
  });

  it("serves another user's operation next while one user has 1000 queued", async () => {
    const slots = new FairScheduler('exec', limits({ global: 2, perUser: 2, perSandbox: 2 }));
    const order: string[] = [];
    const releases: Release[] = [];
    const take = (owner: SlotOwner, label: string): void => {
      void slots.acquire(owner).then((release) => {
        order.push(label);
        releases.push(release);
      });
    };
    for (let i = 0; i < 1000; i++) take(A1, 'a');
    await settle();
    take(B1, 'b');
    await settle();
    assert.deepEqual(order, ['a', 'a']);
    assert.equal(slots.queued, 999);
    // One of tenant A's operations finishes: the free slot goes to B, not to A's queue.
    releases.shift()?.();
    await settle();
    assert.deepEqual(order, ['a', 'a', 'b']);
    // Then round-robin between users with waiters: only A has any left.
    releases.shift()?.();
    await settle();
    assert.deepEqual(order, ['a', 'a', 'b', 'a']);
    while (releases.length > 0) {
      releases.shift()?.();
      await settle();
    }
    assert.equal(order.length, 1001);
  });

  it('alternates between users and, within a user, between sandboxes', async () => {
    const slots = new FairScheduler('exec', limits({ global: 1 }));
    const order: string[] = [];
    const first = await slots.acquire(A1);
    const all: Array<Promise<void>> = [];
    for (const owner of [A1, A1, A1, A2, A2, B1, B1]) {
      all.push(
        slots.run(owner, async () => {
          order.push(owner.sandboxId);
        }),
      );
    }
    first();
    await Promise.all(all);
    assert.deepEqual(order, ['a1', 'b1', 'a2', 'b1', 'a1', 'a2', 'a1']);
  });

  it('answers 429 with a retry hint once a user has maxQueuedPerUser waiting', async () => {
    const slots = new FairScheduler('exec', limits({ global: 1, maxQueuedPerUser: 2 }));
    const release = await slots.acquire(A1);
    const waiting = [slots.acquire(A1), slots.acquire(A2)];
    const refused = await slots.acquire(A1).then(
      () => undefined,
      (error: unknown) => error,
    );
    assert.ok(refused instanceof GatewayError);
    assert.equal(refused.status, 429);
    assert.equal(refused.extra.retry_after, 1);
    // Another user still queues.
    const other = slots.acquire(B1);
    release();
    await Promise.all([...waiting, other].map((granted) => granted.then((r) => r())));
    assert.equal(slots.inUse, 0);
    assert.equal(slots.queued, 0);
  });

  it('tryAcquire takes a slot only when one is free', () => {
    const slots = new FairScheduler('session', limits({ perSandbox: 1 }));
    const release = slots.tryAcquire(A1);
    assert.ok(release);
    assert.equal(slots.tryAcquire(A1), undefined);
    release();
    assert.ok(slots.tryAcquire(A1));
  });
});

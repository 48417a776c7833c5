import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Semaphore } from './semaphore.js';

describe('Semaphore', () => {
  it('never runs more than its limit and serves waiters in order', async () => {
    const slots = new Semaphore(3);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        slots.run(async () => {
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

  it('drops a waiter whose signal aborts', async () => {
    const slots = new Semaphore(1);
    const release = await slots.acquire();
    const controller = new AbortController();
    const waiting = slots.acquire(controller.signal);
    assert.equal(slots.queued, 1);
    controller.abort(new Error('gone'));
    await assert.rejects(waiting, /gone/);
    assert.equal(slots.queued, 0);
    release();
    assert.equal(slots.inUse, 0);
  });
});

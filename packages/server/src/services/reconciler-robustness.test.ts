import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RuntimeSandboxState, SandboxRuntime, SandboxSpec } from '../runtime/runtime.js';
import { SandboxLifecycle } from './sandbox-lifecycle.js';
import type { SandboxFilter, Store } from '../store/store.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';
import { Reconciler } from './reconciler.js';

/** A runtime double: containers in a map, creates that wait for `release()`, removals that can fail. */
class FakeRuntime {
  readonly name = 'fake';
  readonly containers = new Map<string, RuntimeSandboxState>();
  readonly createOrder: string[] = [];
  readonly removeCalls: string[] = [];
  /** Runtime ids whose next removal throws. */
  readonly failNextRemove = new Set<string>();
  concurrentCreates = 0;
  maxConcurrentCreates = 0;
  private gate: Promise<void> = Promise.resolve();
  private open: () => void = () => undefined;

  /** Makes creates wait until `release()`. */
  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.open();
  }

  capabilities() {
    return { gpuCount: 0, gpuTypes: [] };
  }

  async create(spec: SandboxSpec): Promise<{ runtimeId: string }> {
    this.concurrentCreates++;
    this.maxConcurrentCreates = Math.max(this.maxConcurrentCreates, this.concurrentCreates);
    this.createOrder.push(spec.sandboxId);
    try {
      await this.gate;
      await new Promise((resolve) => setTimeout(resolve, 2));
      const runtimeId = `c-${spec.sandboxId}`;
      this.containers.set(spec.sandboxId, { sandboxId: spec.sandboxId, runtimeId, running: true, exitCode: null, oomKilled: false });
      return { runtimeId };
    } finally {
      this.concurrentCreates--;
    }
  }

  async remove(runtimeId: string): Promise<void> {
    this.removeCalls.push(runtimeId);
    if (this.failNextRemove.delete(runtimeId)) throw new Error('device or resource busy');
    for (const [id, c] of this.containers) if (c.runtimeId === runtimeId) this.containers.delete(id);
  }

  /** When set, answers `list()` instead of the map (a test's hook into the middle of a pass). */
  listHook: (() => Promise<RuntimeSandboxState[]>) | undefined;

  async list(): Promise<RuntimeSandboxState[]> {
    if (this.listHook) return this.listHook();
    return [...this.containers.values()];
  }

  onEvent(): () => void {
    return () => undefined;
  }
}

describe('reconciler and provisioning robustness', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(async () => t.close());

  async function createRow(body: Record<string, unknown> = {}): Promise<string> {
    const res = await t.request('POST', '/api/v1/sandbox', { body: { name: 'r', docker_image: 'busybox', ...body } });
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ id: string }>().id;
  }

  function parts(runtime: FakeRuntime, store: Store = t.server.store, maxConcurrentProvisioning = 3) {
    const lifecycle = new SandboxLifecycle(store, runtime as unknown as SandboxRuntime, { ...t.server.config, maxConcurrentProvisioning }, t.server.log);
    const reconciler = new Reconciler(store, lifecycle, 60_000, t.server.log, { fullResyncMs: 60_000 });
    return { lifecycle, reconciler };
  }

  it('never runs more creates at once than the provisioning bound, keeps the queue PENDING and serves it in order', async () => {
    const runtime = new FakeRuntime();
    const { lifecycle } = parts(runtime);
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await createRow());
    runtime.hold();
    for (const id of ids) lifecycle.provision(id);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(runtime.concurrentCreates, 3);
    assert.equal(lifecycle.provisioningQueued, 7);
    const rows = await t.server.store.getSandboxes(ids);
    assert.equal(rows.filter((r) => r.status === 'PROVISIONING').length, 3);
    assert.equal(rows.filter((r) => r.status === 'PENDING').length, 7);
    runtime.release();
    await lifecycle.close();
    assert.equal(runtime.maxConcurrentCreates, 3);
    assert.deepEqual(runtime.createOrder, ids);
    for (const row of await t.server.store.getSandboxes(ids)) assert.equal(row.status, 'RUNNING');
  });

  it('retries a removal that failed, with backoff, until the container is gone', async () => {
    const runtime = new FakeRuntime();
    const { lifecycle, reconciler } = parts(runtime);
    const id = await createRow();
    lifecycle.provision(id);
    await lifecycle.close();
    const runtimeId = `c-${id}`;
    runtime.failNextRemove.add(runtimeId);
    const row = await t.server.store.getSandbox(id);
    assert.ok(row);
    // The delete's own removal fails: the row ends, its container stays.
    await lifecycle.terminate(row, { status: 'TERMINATED', terminationReason: 'deleted' });
    assert.equal(runtime.containers.has(id), true);
    assert.equal((await t.server.store.getSandbox(id))?.runtimeId, runtimeId);
    runtime.failNextRemove.add(runtimeId);
    const now = Date.now();
    const first = await reconciler.reconcile(now);
    assert.deepEqual(first.removeFailed, [id]);
    // Only this container's removals: earlier tests' RUNNING rows have no container in this runtime and are ended (lost) meanwhile.
    const removalsOf = (): number => runtime.removeCalls.filter((c) => c === runtimeId).length;
    const calls = removalsOf();
    const early = await reconciler.reconcile(now + 100);
    assert.equal(removalsOf(), calls, 'no attempt before the backoff ran out');
    assert.deepEqual(early.orphansRemoved, []);
    const later = await reconciler.reconcile(now + 5_000);
    assert.deepEqual(later.orphansRemoved, [id]);
    assert.equal(runtime.containers.has(id), false);
    assert.equal((await t.server.store.getSandbox(id))?.runtimeId, null);
  });

  it('does not reload every active row on each pass, yet sees changes and due deadlines', async () => {
    let fullListings = 0;
    const store = new Proxy(t.server.store, {
      get(target, property, receiver) {
        if (property === 'findSandboxes') {
          return (filter: SandboxFilter, limit: number) => {
            if (filter.activeOnly && filter.updatedSince === undefined) fullListings++;
            return target.findSandboxes(filter, limit);
          };
        }
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const runtime = new FakeRuntime();
    const { lifecycle, reconciler } = parts(runtime, store);
    const id = await createRow({ timeout_minutes: 600, idle_timeout_minutes: 3 });
    lifecycle.provision(id);
    await lifecycle.close();
    const now = Date.now();
    await t.server.store.updateSandbox(id, { lastActivityAt: new Date(now - 2 * 60_000).toISOString() });
    // The admission queue read the active rows once, at the first create; the passes read them once more.
    const before = fullListings;
    for (let i = 0; i < 5; i++) await reconciler.reconcile(now);
    assert.equal(fullListings - before, 1);
    // Activity (a touch, which does not mark the row written) moves the idle deadline: the pass re-reads the due row.
    await t.server.store.touchSandboxes([id], new Date(now).toISOString());
    const touched = await reconciler.reconcile(now + 2 * 60_000);
    assert.deepEqual(touched.idled, []);
    const idle = await reconciler.reconcile(now + 4 * 60_000);
    assert.deepEqual(idle.idled, [id]);
    // A row written between passes is seen without a full listing.
    const fresh = await createRow({ timeout_minutes: 5 });
    await t.server.store.updateSandbox(fresh, { status: 'RUNNING', runtimeId: `c-${fresh}`, startedAt: new Date(now - 6 * 60_000).toISOString() });
    const report = await reconciler.reconcile(Date.now());
    assert.deepEqual(report.timedOut, [fresh]);
    assert.equal(fullListings - before, 1);
  });
  it('never removes the container of a sandbox whose provisioning finished during the pass', async () => {
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const runtime = new FakeRuntime();
    const { lifecycle, reconciler } = parts(runtime);
    // One row the pass reads as PROVISIONING, one it reads as PENDING; both finish provisioning after the
    // pass read the store and while it lists the runtime, whose snapshot shows their containers created
    // but not yet started (as Docker lists a container between create and start).
    const provisioning = await createRow();
    const pending = await createRow();
    runtime.hold();
    lifecycle.provision(provisioning);
    while ((await t.server.store.getSandbox(provisioning))?.status !== 'PROVISIONING') await sleep(5);
    runtime.listHook = async () => {
      runtime.release();
      lifecycle.provision(pending);
      while (lifecycle.isProvisioning(provisioning) || lifecycle.isProvisioning(pending)) await sleep(5);
      return [provisioning, pending].map((id) => ({ sandboxId: id, runtimeId: `c-${id}`, running: false, exitCode: null, oomKilled: false }));
    };
    const report = await reconciler.reconcile(Date.now());
    runtime.listHook = undefined;
    assert.deepEqual(runtime.removeCalls, [], 'no container of a running sandbox was removed');
    assert.deepEqual(report.provisioned, []);
    for (const id of [provisioning, pending]) {
      assert.equal((await t.server.store.getSandbox(id))?.status, 'RUNNING');
      assert.equal(runtime.containers.has(id), true);
    }
    // The next pass sees them running, not lost.
    const next = await reconciler.reconcile(Date.now());
    assert.deepEqual(next.lost, []);
    await lifecycle.close();
  });
});

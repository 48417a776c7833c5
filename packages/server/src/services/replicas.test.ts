import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../config.js';
import { openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import { sandboxFixture } from '../testing/sandbox-fixture.js';
import { AccessEvents } from './access-events.js';
import { AuthService } from './auth-service.js';
import { Reconciler } from './reconciler.js';
import { ReplicaPresence, UnsharedRuntimeError } from './replica-presence.js';
import { SandboxLifecycle } from './sandbox-lifecycle.js';
import type { SandboxRecord } from '../records/sandbox-records.js';

const log = pino({ level: 'silent' });
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
let counter = 0;
const unique = (what: string): string => `${what}-${process.pid}-${++counter}`;

/** Two (or more) replicas of one deployment on one store and one shared runtime, as the server wires them. */
describe('replicas of one deployment on one store', () => {
  let store: Store;
  const closers: Array<() => Promise<void>> = [];
  before(async () => {
    store = await openStore({ kind: 'sqlite', path: ':memory:' });
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await store.close();
  });

  function replica(deployment: string, replicaId: string, runtime: GatedRuntime, leaseMs = 60_000) {
    const config = loadConfig({ env: {}, overrides: { instanceId: deployment, replicaId, replicaLeaseMs: leaseMs, runtime: 'none', dataDir: '/nonexistent' } });
    const lifecycle = new SandboxLifecycle(store, runtime, config, log);
    const presence = new ReplicaPresence(store, { instanceId: deployment, replicaId, leaseMs, sharedRuntime: true, runtimeName: runtime.name }, log);
    const reconciler = new Reconciler(store, lifecycle, 60_000, log, { presence });
    closers.push(async () => {
      await reconciler.stop();
      runtime.openAll();
      await lifecycle.close();
      await presence.stop();
    });
    return { lifecycle, presence, reconciler };
  }

  async function insert(overrides: Partial<SandboxRecord>): Promise<SandboxRecord> {
    const row = sandboxFixture({ id: unique('sb'), userId: unique('user'), ...overrides });
    await store.insertSandbox(row);
    return row;
  }

  it('one replica reconciles at a time: of two passes at once, one acts', async () => {
    const deployment = unique('deploy');
    const runtime = new GatedRuntime();
    const a = replica(deployment, 'a', runtime);
    const b = replica(deployment, 'b', runtime);
    await a.presence.start();
    await b.presence.start();
    const startedAt = new Date(Date.now() - 10 * 60_000).toISOString();
    const due = await insert({ status: 'RUNNING', runtimeOwner: deployment, runtimeId: 'gated-x', startedAt, timeoutMinutes: 1 });
    const [ra, rb] = await Promise.all([a.reconciler.reconcile(), b.reconciler.reconcile()]);
    assert.deepEqual([...ra.timedOut, ...rb.timedOut], [due.id], 'ended once, by the leader');
    const leader = ra.timedOut.length > 0 ? a : b;
    const follower = leader === a ? b : a;
    assert.equal(await follower.presence.tryLead(), false, 'the lease stays with the leader');
    // The leader goes (clean shutdown gives the lease up): the other one leads at once.
    await leader.presence.stop();
    assert.equal(await follower.presence.tryLead(), true);
  });

  it("adopts a dead replica's provisioning once its heartbeat lapses, never before, and fences the dead one's late writes", async () => {
    const deployment = unique('deploy');
    const runtime = new GatedRuntime();
    // Replica a: provisions, then "dies" (its heartbeat is never renewed: it lapses like a SIGKILLed one's).
    const a = replica(deployment, 'a', runtime);
    await store.heartbeatReplica('a', deployment, 1_200);
    const b = replica(deployment, 'b', runtime);
    await b.presence.start();
    const row = await insert({ status: 'PENDING', runtimeOwner: deployment, provisioner: 'a' });
    a.lifecycle.provision(row);
    await runtime.started(row.id);
    assert.equal((await store.getSandbox(row.id))?.status, 'PROVISIONING');

    // a is live: b's pass leaves its work and its container alone (no adoption, no orphan removal).
    const early = await b.reconciler.reconcile();
    assert.deepEqual(early.adopted, []);
    assert.deepEqual(early.provisioned, []);
    assert.deepEqual(early.orphansRemoved, []);
    assert.deepEqual(runtime.live(), [row.id]);
    assert.equal((await store.getSandbox(row.id))?.provisioner, 'a');

    await sleep(1_400);
    const late = await b.reconciler.reconcile();
    assert.deepEqual(late.adopted, [row.id], "a's heartbeat lapsed: b adopts the running container");
    const adopted = await store.getSandbox(row.id);
    assert.equal(adopted?.status, 'RUNNING');
    assert.equal(adopted?.provisioner, 'b');
    assert.equal(adopted?.runtimeId, `gated-${row.id}`);

    // a's create finally returns: its writes are fenced on a claim it lost, and it leaves the container to b.
    runtime.open(row.id);
    await a.lifecycle.close();
    assert.deepEqual(runtime.live(), [row.id], 'the adopted container survives');
    const after = await store.getSandbox(row.id);
    assert.equal(after?.status, 'RUNNING');
    assert.equal(after?.provisioner, 'b');
  });

  it("re-provisions a dead replica's PENDING sandbox on the leader", async () => {
    const deployment = unique('deploy');
    const runtime = new GatedRuntime();
    runtime.openAll();
    await store.heartbeatReplica('dead', deployment, 1);
    const b = replica(deployment, 'b', runtime);
    await b.presence.start();
    const row = await insert({ status: 'PENDING', runtimeOwner: deployment, provisioner: 'dead' });
    await sleep(20);
    const report = await b.reconciler.reconcile();
    assert.deepEqual(report.provisioned, [row.id]);
    await b.lifecycle.close();
    const done = await store.getSandbox(row.id);
    assert.equal(done?.status, 'RUNNING');
    assert.equal(done?.provisioner, 'b');
    assert.deepEqual(runtime.created, [row.id], 'created once');
  });

  it('a driver whose sandboxes cannot be shared refuses a second live replica, but not a killed predecessor', async () => {
    const deployment = unique('deploy');
    const unshared = (replicaId: string, leaseMs: number): ReplicaPresence =>
      new ReplicaPresence(store, { instanceId: deployment, replicaId, leaseMs, sharedRuntime: false, runtimeName: 'oci' }, log);
    const first = unshared('first', 1_000);
    await first.start();
    closers.push(() => first.stop());
    const second = unshared('second', 1_000);
    await assert.rejects(second.start(), (error: unknown) => error instanceof UnsharedRuntimeError && /live replica \(first\)/.test(error.message));
    assert.deepEqual(await store.liveReplicas(deployment), ['first'], 'the refused one left no heartbeat');
    // A killed predecessor's heartbeat lapses within one lease: the restart waits it out and starts.
    await first.stop();
    await store.heartbeatReplica('killed', deployment, 600);
    const restarted = unshared('restarted', 1_000);
    await restarted.start();
    closers.push(() => restarted.stop());
    assert.deepEqual(await store.liveReplicas(deployment), ['restarted']);
  });

  it("a restart on the same host takes over a dead predecessor's leader lease and heartbeat at once", async () => {
    const deployment = unique('deploy');
    // A predecessor on this host whose process is gone (a pid above any pid_max), holding the leader lease for a minute.
    await store.heartbeatReplica('dead', deployment, 60_000, { host: hostname(), pid: 2 ** 30 });
    assert.equal(await store.acquireLease(`reconciler:${deployment}`, 'dead', 60_000), true);
    // A live one elsewhere is left alone.
    await store.heartbeatReplica('elsewhere', deployment, 60_000, { host: `not-${hostname()}`, pid: 2 ** 30 });
    const restarted = new ReplicaPresence(store, { instanceId: deployment, replicaId: 'restarted', leaseMs: 60_000, sharedRuntime: true, runtimeName: 'docker' }, log);
    await restarted.start();
    closers.push(() => restarted.stop());
    assert.deepEqual(await store.liveReplicas(deployment), ['elsewhere', 'restarted']);
    assert.equal(await restarted.tryLead(), true);
  });

  it('replicas starting together on a fresh store both bootstrap: one admin, the bootstrap key works', async () => {
    const fresh = await openStore({ kind: 'sqlite', path: ':memory:' });
    try {
      const key = `corral_bootstrap_${process.pid}`;
      const services = Array.from({ length: 3 }, () => new AuthService(fresh, new AccessEvents(() => undefined)));
      const results = await Promise.all(services.map((auth) => auth.bootstrap(key)));
      assert.deepEqual(results, results.map(() => ({ createdKey: null })));
      assert.equal((await fresh.listUsers()).filter((u) => u.name === 'admin').length, 1);
      assert.equal((await services[1]?.authenticate(key))?.user.name, 'admin');
    } finally {
      await fresh.close();
    }
  });
});

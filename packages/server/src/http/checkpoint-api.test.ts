import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { CorralConfig } from '../config.js';
import { RESTARTED_DURING_CAPTURE } from '../services/checkpoint-service.js';
import { CheckpointingRuntime } from '../testing/checkpointing-runtime.js';
import type { GatedRuntime } from '../testing/gated-runtime.js';
import { PausableRuntime } from '../testing/pausable-runtime.js';
import { eventually } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

interface Sandbox {
  id: string;
  status: string;
  dockerImage: string;
  diskSizeGB: number;
  checkpointId?: string | null;
  cpuCores: number;
  labels: string[];
}
interface Checkpoint {
  id: string;
  sandbox_id: string;
  parent_id: string | null;
  team_id: string | null;
  user_id: string;
  state: string;
  depth: number;
  docker_image: string;
  disk_size_bytes: number;
  stored_bytes: number;
  memory: boolean;
  error: string | null;
  created_at: string;
  updated_at: string;
}
interface ErrorBody {
  code: string;
  detail: string;
}

const GIB = 1024 ** 3;

async function server(runtime: GatedRuntime, overrides: Partial<CorralConfig> = {}): Promise<TestServer> {
  runtime.openAll();
  return startTestServer({ instanceId: `ckpt-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 600_000, createWaitMs: 2_000, ...overrides }, {}, { runtime });
}

function as(key: string | undefined): { key?: string } {
  return key ? { key } : {};
}

async function running(t: TestServer, id: string, key?: string): Promise<Sandbox> {
  return eventually(async () => {
    const s = (await t.request('GET', `/api/v1/sandbox/${id}`, as(key))).json<Sandbox>();
    return s.status === 'RUNNING' ? s : undefined;
  }, 30_000, `sandbox ${id} RUNNING`);
}

async function createRunning(t: TestServer, body: Record<string, unknown> = {}, key?: string): Promise<Sandbox> {
  const response = await t.request('POST', '/api/v1/sandbox', { body: { name: 'c', docker_image: 'busybox:latest', disk_size_gb: 3, ...body }, ...as(key) });
  assert.equal(response.statusCode, 201, response.body);
  return running(t, response.json<Sandbox>().id, key);
}

async function checkpoint(t: TestServer, sandboxId: string, options: { key?: string; body?: unknown } = {}): Promise<{ status: number; body: Checkpoint & ErrorBody }> {
  const response = await t.request('POST', `/api/v1/sandbox/${sandboxId}/checkpoints`, { ...as(options.key), ...(options.body !== undefined ? { body: options.body } : {}) });
  return { status: response.statusCode, body: response.json<Checkpoint & ErrorBody>() };
}

async function settledCheckpoint(t: TestServer, id: string, key?: string): Promise<Checkpoint> {
  return eventually(async () => {
    const c = (await t.request('GET', `/api/v1/sandbox/checkpoints/${id}`, as(key))).json<Checkpoint>();
    return c.state === 'DURABLE' || c.state === 'FAILED' ? c : undefined;
  }, 30_000, `checkpoint ${id} settled`);
}

async function durableOf(t: TestServer, sandboxId: string, key?: string): Promise<Checkpoint> {
  const started = await checkpoint(t, sandboxId, as(key));
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const done = await settledCheckpoint(t, started.body.id, key);
  assert.equal(done.state, 'DURABLE', JSON.stringify(done));
  return done;
}

describe('checkpoints API', () => {
  it("serves Prime's checkpoint flow: PENDING → DURABLE, get, list (and filter), restore with checkpoint_id, parent and depth", async () => {
    const runtime = new CheckpointingRuntime();
    runtime.sizeBytes = 123_456;
    const t = await server(runtime);
    try {
      const s = await createRunning(t);
      // Prime's SDK sends no body.
      const started = await checkpoint(t, s.id);
      assert.equal(started.status, 201, JSON.stringify(started.body));
      assert.equal(started.body.state, 'PENDING');
      for (const field of ['id', 'sandbox_id', 'parent_id', 'team_id', 'state', 'depth', 'docker_image', 'created_at', 'updated_at', 'error']) {
        assert.ok(field in started.body, `the checkpoint has ${field}`);
      }
      assert.equal(started.body.sandbox_id, s.id);
      assert.equal(started.body.parent_id, null);
      assert.equal(started.body.depth, 1);
      assert.equal(started.body.docker_image, 'busybox:latest');
      const first = await settledCheckpoint(t, started.body.id);
      assert.equal(first.state, 'DURABLE');
      assert.equal(first.stored_bytes, 123_456);
      assert.equal(first.disk_size_bytes, 3 * GIB);
      assert.equal(runtime.checkpointCalls.length, 1);
      assert.deepEqual(runtime.checkpointCalls[0], { runtimeId: `gated-${s.id}`, request: { checkpointId: first.id, memory: false } });

      // The second is stored on top of the first.
      const second = await durableOf(t, s.id);
      assert.equal(second.parent_id, first.id);
      assert.equal(second.depth, 2);
      assert.equal(runtime.checkpointCalls[1]?.request.parentRef, `ckpt-${first.id}`);

      const listed = await t.request('GET', `/api/v1/sandbox/${s.id}/checkpoints`);
      assert.equal(listed.statusCode, 200, listed.body);
      assert.deepEqual(listed.json<{ checkpoints: Checkpoint[] }>().checkpoints.map((c) => c.id), [second.id, first.id]);
      const filtered = await t.request('GET', `/api/v1/sandbox/${s.id}/checkpoints?checkpoint_id=${first.id}`);
      assert.deepEqual(filtered.json<{ checkpoints: Checkpoint[] }>().checkpoints.map((c) => c.id), [first.id]);
      const all = await t.request('GET', '/api/v1/sandbox/checkpoints?per_page=1');
      assert.equal(all.statusCode, 200, all.body);
      const page = all.json<{ checkpoints: Checkpoint[]; total: number; has_next: boolean }>();
      assert.equal(page.total, 2);
      assert.equal(page.has_next, true);

      // Restore, as Prime's SDK sends it: vm true, no docker_image, no disk_size_gb.
      const restored = await t.request('POST', '/api/v1/sandbox', { body: { name: 'restored', checkpoint_id: first.id, vm: true, cpu_cores: 1, memory_gb: 1, timeout_minutes: 60 } });
      assert.equal(restored.statusCode, 201, restored.body);
      const r = await running(t, restored.json<Sandbox>().id);
      assert.equal(r.dockerImage, 'busybox:latest');
      assert.equal(r.diskSizeGB, 3);
      assert.equal(r.checkpointId, first.id);
      assert.deepEqual(runtime.specs.get(r.id)?.checkpoint, { ref: `ckpt-${first.id}`, memory: false });
      assert.equal(runtime.specs.get(s.id)?.checkpoint, undefined, 'a plain create starts from the image');
      // A checkpoint of the restored sandbox is stored on top of the one it came from.
      const child = await durableOf(t, r.id);
      assert.equal(child.parent_id, first.id);
      assert.equal(child.depth, 2);

      // The same image and disk are accepted; other ones are a 422.
      const same = await t.request('POST', '/api/v1/sandbox', { body: { name: 'same', checkpoint_id: first.id, docker_image: 'busybox:latest', disk_size_gb: 3 } });
      assert.equal(same.statusCode, 201, same.body);
      for (const [field, value] of [['docker_image', 'alpine:3'], ['disk_size_gb', 5]] as const) {
        const conflict = await t.request('POST', '/api/v1/sandbox', { body: { name: 'x', checkpoint_id: first.id, [field]: value } });
        assert.equal(conflict.statusCode, 422, `${field}: ${conflict.body}`);
        assert.match(conflict.body, new RegExp(field));
      }
      const noImage = await t.request('POST', '/api/v1/sandbox', { body: { name: 'x' } });
      assert.equal(noImage.statusCode, 422, noImage.body);
      assert.match(noImage.body, /docker_image/);

      const metrics = (await t.server.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '127.0.0.1' })).body;
      assert.match(metrics, /^corral_checkpoints\{state="DURABLE"\} 3$/m);
      assert.match(metrics, /^corral_checkpoint_capture_seconds_count\{driver="gated",memory="false",result="durable"\} 3$/m);
    } finally {
      await t.close();
    }
  });

  it('answers clear 4xx: unknown 404, not durable 409, failed capture FAILED with its error, not running 409, memory on a filesystem-only driver 409', async () => {
    const runtime = new CheckpointingRuntime();
    const t = await server(runtime);
    try {
      const missing = await t.request('GET', '/api/v1/sandbox/checkpoints/nosuch');
      assert.equal(missing.statusCode, 404);
      assert.equal(missing.json<ErrorBody>().code, 'CHECKPOINT_NOT_FOUND');
      assert.equal((await checkpoint(t, 'nosuchsandbox')).status, 404);
      const unknownRestore = await t.request('POST', '/api/v1/sandbox', { body: { name: 'x', checkpoint_id: 'nosuch' } });
      assert.equal(unknownRestore.statusCode, 404);
      assert.equal(unknownRestore.json<ErrorBody>().code, 'CHECKPOINT_NOT_FOUND');

      const s = await createRunning(t);
      const memory = await checkpoint(t, s.id, { body: { memory: true } });
      assert.equal(memory.status, 409);
      assert.equal(memory.body.code, 'MEMORY_CHECKPOINT_UNSUPPORTED');
      assert.match(memory.body.detail, /memory/);

      runtime.holdCaptures();
      const pending = await checkpoint(t, s.id);
      assert.equal(pending.status, 201);
      await eventually(async () => ((await t.request('GET', `/api/v1/sandbox/checkpoints/${pending.body.id}`)).json<Checkpoint>().state === 'FROZEN' ? true : undefined), 10_000, 'FROZEN');
      const early = await t.request('POST', '/api/v1/sandbox', { body: { name: 'x', checkpoint_id: pending.body.id } });
      assert.equal(early.statusCode, 409, early.body);
      assert.equal(early.json<ErrorBody>().code, 'CHECKPOINT_NOT_DURABLE');
      assert.match(early.json<ErrorBody>().detail, /FROZEN/);
      const busy = await t.request('DELETE', `/api/v1/sandbox/checkpoints/${pending.body.id}`);
      assert.equal(busy.statusCode, 409);
      assert.equal(busy.json<ErrorBody>().code, 'CHECKPOINT_BUSY');
      runtime.failCaptures = 'CRIU could not dump a process';
      runtime.releaseCaptures();
      const failed = await settledCheckpoint(t, pending.body.id);
      assert.equal(failed.state, 'FAILED');
      assert.match(failed.error ?? '', /CRIU could not dump/);
      const fromFailed = await t.request('POST', '/api/v1/sandbox', { body: { name: 'x', checkpoint_id: failed.id } });
      assert.equal(fromFailed.json<ErrorBody>().code, 'CHECKPOINT_NOT_DURABLE');
      runtime.failCaptures = null;

      assert.equal((await t.request('DELETE', `/api/v1/sandbox/${s.id}`)).statusCode, 200);
      const ended = await checkpoint(t, s.id);
      assert.equal(ended.status, 409);
      assert.equal(ended.body.code, 'SANDBOX_NOT_RUNNING');
      assert.match(ended.body.detail, /TERMINATED/);
    } finally {
      runtime.releaseCaptures();
      await t.close();
    }
  });

  it('refuses checkpoints, restores and forks on a driver without the capability with 409 CHECKPOINT_UNSUPPORTED', async () => {
    const runtime = new PausableRuntime();
    const t = await server(runtime);
    try {
      const s = await createRunning(t);
      const refusals = [
        await t.request('POST', `/api/v1/sandbox/${s.id}/checkpoints`),
        await t.request('POST', `/api/v1/sandbox/${s.id}/fork`, { body: { count: 2 } }),
      ];
      for (const r of refusals) {
        assert.equal(r.statusCode, 409, r.body);
        assert.equal(r.json<ErrorBody>().code, 'CHECKPOINT_UNSUPPORTED');
      }
      // A checkpoint stored earlier (another driver) cannot be restored here either.
      const stored = await t.server.store.listCheckpoints({}, 1, 1);
      assert.equal(stored.total, 0, 'nothing was stored');
    } finally {
      await t.close();
    }
  });

  it('shows checkpoints only to their owner and to admins of their team: anyone else gets 404 and never a sandbox from them', async () => {
    const runtime = new CheckpointingRuntime();
    const t = await server(runtime);
    try {
      const owner = await t.createUser(`owner-${randomBytes(3).toString('hex')}`);
      const other = await t.createUser(`other-${randomBytes(3).toString('hex')}`);
      const admin = await t.createUser(`admin-${randomBytes(3).toString('hex')}`);
      const team = (await t.request('POST', '/api/v1/teams', { body: { name: `team-${randomBytes(3).toString('hex')}` } })).json<{ id: string }>();
      for (const [user, role] of [[owner, 'member'], [other, 'member'], [admin, 'admin']] as const) {
        assert.equal((await t.request('PUT', `/api/v1/teams/${team.id}/members/${user.id}`, { body: { role } })).statusCode, 200);
      }
      const s = await createRunning(t, { team_id: team.id }, owner.key);
      const c = await durableOf(t, s.id, owner.key);
      assert.equal(c.team_id, team.id);
      assert.equal(c.user_id, owner.id);

      const foreign = [
        await t.request('GET', `/api/v1/sandbox/checkpoints/${c.id}`, { key: other.key }),
        await t.request('GET', `/api/v1/sandbox/${s.id}/checkpoints`, { key: other.key }),
        await t.request('POST', `/api/v1/sandbox/${s.id}/checkpoints`, { key: other.key }),
        await t.request('DELETE', `/api/v1/sandbox/checkpoints/${c.id}`, { key: other.key }),
        await t.request('POST', '/api/v1/sandbox', { key: other.key, body: { name: 'steal', checkpoint_id: c.id } }),
        await t.request('POST', `/api/v1/sandbox/checkpoints/${c.id}/fork`, { key: other.key, body: { count: 1 } }),
        await t.request('POST', `/api/v1/sandbox/${s.id}/fork`, { key: other.key, body: { count: 1 } }),
      ];
      for (const r of foreign) assert.equal(r.statusCode, 404, r.body);
      const listed = (await t.request('GET', '/api/v1/sandbox/checkpoints', { key: other.key })).json<{ total: number }>();
      assert.equal(listed.total, 0);
      const otherSandboxes = (await t.request('GET', '/api/v1/sandbox', { key: other.key })).json<{ total: number }>();
      assert.equal(otherSandboxes.total, 0, 'no sandbox was made from the foreign checkpoint');

      // The team's admin sees and restores it.
      assert.equal((await t.request('GET', `/api/v1/sandbox/checkpoints/${c.id}`, { key: admin.key })).statusCode, 200);
      assert.equal((await t.request('GET', '/api/v1/sandbox/checkpoints', { key: admin.key })).json<{ total: number }>().total, 1);
      const restored = await t.request('POST', '/api/v1/sandbox', { key: admin.key, body: { name: 'team-restore', checkpoint_id: c.id, team_id: team.id } });
      assert.equal(restored.statusCode, 201, restored.body);
    } finally {
      await t.close();
    }
  });

  it('captures one at a time per sandbox, FROZEN while held, each on top of the one before', async () => {
    const runtime = new CheckpointingRuntime();
    const t = await server(runtime);
    try {
      const s = await createRunning(t);
      runtime.holdCaptures();
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await checkpoint(t, s.id);
        assert.equal(r.status, 201, JSON.stringify(r.body));
        ids.push(r.body.id);
      }
      await eventually(async () => (runtime.checkpointCalls.length >= 1 ? true : undefined), 10_000, 'the first capture started');
      // Give a second capture a chance to start, which it must not.
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(runtime.checkpointCalls.length, 1, 'the next capture waits for the first');
      runtime.releaseCaptures();
      const done = [];
      for (const id of ids) done.push(await settledCheckpoint(t, id));
      assert.ok(done.every((c) => c.state === 'DURABLE'));
      assert.equal(runtime.maxRunning, 1);
      assert.deepEqual(done.map((c) => c.parent_id), [null, ids[0], ids[1]]);
      assert.deepEqual(done.map((c) => c.depth), [1, 2, 3]);
    } finally {
      runtime.releaseCaptures();
      await t.close();
    }
  });

  it('forks a checkpoint into count sandboxes, and a running sandbox through a checkpoint; within quotas, all or nothing', async () => {
    const runtime = new CheckpointingRuntime();
    const t = await server(runtime);
    try {
      const user = await t.createUser(`forker-${randomBytes(3).toString('hex')}`);
      const s = await createRunning(t, { cpu_cores: 0.5, labels: ['src'], environment_vars: { MODE: 'x' } }, user.key);
      const c = await durableOf(t, s.id, user.key);
      const forked = await t.request('POST', `/api/v1/sandbox/checkpoints/${c.id}/fork`, { key: user.key, body: { count: 3, labels: ['fork'] } });
      assert.equal(forked.statusCode, 201, forked.body);
      const forks = forked.json<{ sandboxes: Sandbox[] }>().sandboxes;
      assert.equal(forks.length, 3);
      assert.equal(new Set(forks.map((f) => f.id)).size, 3);
      for (const f of forks) {
        assert.equal(f.checkpointId, c.id);
        assert.deepEqual(f.labels, ['fork']);
        assert.deepEqual(runtime.specs.get(f.id)?.checkpoint, { ref: `ckpt-${c.id}`, memory: false });
      }

      const viaSandbox = await t.request('POST', `/api/v1/sandbox/${s.id}/fork`, { key: user.key, body: { count: 2 } });
      assert.equal(viaSandbox.statusCode, 201, viaSandbox.body);
      const body = viaSandbox.json<{ checkpoint: Checkpoint; sandboxes: Sandbox[] }>();
      assert.equal(body.checkpoint.state, 'DURABLE');
      assert.equal(body.checkpoint.parent_id, c.id);
      assert.equal(body.sandboxes.length, 2);
      for (const f of body.sandboxes) {
        assert.equal(f.checkpointId, body.checkpoint.id);
        assert.equal(f.cpuCores, 0.5, 'a fork of a sandbox keeps its settings');
        assert.deepEqual(f.labels, ['src']);
      }

      for (const count of [0, 65]) {
        const bad = await t.request('POST', `/api/v1/sandbox/checkpoints/${c.id}/fork`, { key: user.key, body: { count } });
        assert.equal(bad.statusCode, 422, `count ${count}`);
      }

      // 6 active now; a quota of 8 refuses a fork of 3 and leaves no partial fork behind.
      assert.equal((await t.request('PUT', `/api/v1/users/${user.id}/quota`, { body: { sandboxes: 8 } })).statusCode, 200);
      const over = await t.request('POST', `/api/v1/sandbox/checkpoints/${c.id}/fork`, { key: user.key, body: { count: 3 } });
      assert.equal(over.statusCode, 403, over.body);
      assert.equal(over.json<ErrorBody>().code, 'QUOTA_EXCEEDED');
      const active = (await t.request('GET', '/api/v1/sandbox?is_active=true', { key: user.key })).json<{ total: number }>();
      assert.equal(active.total, 6);

      runtime.failCaptures = 'disk full';
      const failedFork = await t.request('POST', `/api/v1/sandbox/${s.id}/fork`, { key: user.key, body: { count: 1 } });
      assert.equal(failedFork.statusCode, 409, failedFork.body);
      assert.equal(failedFork.json<ErrorBody>().code, 'CHECKPOINT_CAPTURE_FAILED');
      assert.match(failedFork.json<ErrorBody>().detail, /disk full/);
    } finally {
      await t.close();
    }
  });

  it('deletes a checkpoint (its data through the driver) while sandboxes restored from it keep running; checkpoints outlive their sandbox', async () => {
    const runtime = new CheckpointingRuntime();
    const t = await server(runtime);
    try {
      const s = await createRunning(t);
      const c = await durableOf(t, s.id);
      assert.equal((await t.request('DELETE', `/api/v1/sandbox/${s.id}`)).statusCode, 200);
      // The sandbox ended; its checkpoint stays and still restores.
      assert.equal((await t.request('GET', `/api/v1/sandbox/checkpoints/${c.id}`)).json<Checkpoint>().state, 'DURABLE');
      const restored = await t.request('POST', '/api/v1/sandbox', { body: { name: 'r', checkpoint_id: c.id } });
      assert.equal(restored.statusCode, 201, restored.body);
      const r = await running(t, restored.json<Sandbox>().id);

      runtime.failDeletes = true;
      const refused = await t.request('DELETE', `/api/v1/sandbox/checkpoints/${c.id}`);
      assert.equal(refused.statusCode, 200, refused.body);
      assert.match(refused.json<{ message: string }>().message, /DELETING/);
      assert.equal((await t.request('GET', `/api/v1/sandbox/checkpoints/${c.id}`)).json<Checkpoint>().state, 'DELETING', 'kept DELETING while the driver refuses');
      runtime.failDeletes = false;
      await t.server.reconciler.reconcile();
      assert.equal((await t.request('GET', `/api/v1/sandbox/checkpoints/${c.id}`)).statusCode, 404, 'the sweep deleted it');
      assert.deepEqual(runtime.deletedRefs, [`ckpt-${c.id}`]);
      assert.equal((await t.request('GET', `/api/v1/sandbox/${r.id}`)).json<Sandbox>().status, 'RUNNING');
      const again = await t.request('POST', '/api/v1/sandbox', { body: { name: 'r2', checkpoint_id: c.id } });
      assert.equal(again.statusCode, 404);
      const events = (await t.request('GET', `/api/v1/sandbox/${s.id}/events`)).json<{ events: Array<{ type: string }> }>().events.map((e) => e.type);
      for (const type of ['checkpoint.created', 'checkpoint.durable', 'checkpoint.deleted']) assert.ok(events.includes(type), `${type} in ${events.join(', ')}`);
    } finally {
      await t.close();
    }
  });

  it('fails captures no process runs any more (a restart), and deletes checkpoints past their retention', async () => {
    const runtime = new CheckpointingRuntime();
    const t = await server(runtime, { checkpointRetentionHours: 1 });
    try {
      const s = await createRunning(t);
      const c = await durableOf(t, s.id);
      assert.ok(c.created_at);
      const stored = await t.server.store.getCheckpoint(c.id);
      assert.ok(stored?.expiresAt, 'a retention sets expiresAt');
      // Rows a previous process left capturing: one of this replica id, one of a replica that is gone.
      for (const [id, replicaId, state] of [['cut1', t.server.config.replicaId, 'PENDING'], ['cut2', 'gone-replica', 'FROZEN']] as const) {
        await t.server.store.insertCheckpoint({ ...stored, id, state, replicaId, runtimeRef: null, parentId: null, expiresAt: null });
      }
      await t.server.reconciler.reconcile();
      for (const id of ['cut1', 'cut2']) {
        const row = (await t.request('GET', `/api/v1/sandbox/checkpoints/${id}`)).json<Checkpoint>();
        assert.equal(row.state, 'FAILED', id);
        assert.equal(row.error, RESTARTED_DURING_CAPTURE);
      }
      assert.equal((await t.request('GET', `/api/v1/sandbox/checkpoints/${c.id}`)).json<Checkpoint>().state, 'DURABLE', 'not expired yet');
      await t.server.reconciler.reconcile(Date.now() + 2 * 3_600_000);
      assert.equal((await t.request('GET', `/api/v1/sandbox/checkpoints/${c.id}`)).statusCode, 404, 'expired and deleted');
      assert.ok(runtime.deletedRefs.includes(`ckpt-${c.id}`));
    } finally {
      await t.close();
    }
  });

  it("counts checkpoint bytes against the owner's disk quota and refuses a new checkpoint when it is used up, or past the count limit", async () => {
    const runtime = new CheckpointingRuntime();
    runtime.sizeBytes = 4 * GIB;
    const t = await server(runtime, { maxCheckpointsPerUser: 3 });
    try {
      const user = await t.createUser(`quota-${randomBytes(3).toString('hex')}`);
      assert.equal((await t.request('PUT', `/api/v1/users/${user.id}/quota`, { body: { disk_gb: 10 } })).statusCode, 200);
      const s = await createRunning(t, { disk_size_gb: 3 }, user.key);
      await durableOf(t, s.id, user.key);
      const quota = (await t.request('GET', `/api/v1/users/${user.id}/quota`, { key: user.key })).json<{ usage: { disk_gb: number } }>();
      assert.equal(quota.usage.disk_gb, 7, '3 GB disk + 4 GB checkpoint');
      await durableOf(t, s.id, user.key);
      const refused = await checkpoint(t, s.id, { key: user.key });
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'QUOTA_EXCEEDED');
      assert.match(refused.body.detail, /disk/);
      // The sandboxes' creates see the checkpoint bytes too.
      const create = await t.request('POST', '/api/v1/sandbox', { key: user.key, body: { name: 'big', docker_image: 'busybox', disk_size_gb: 1 } });
      assert.equal(create.statusCode, 403, create.body);

      assert.equal((await t.request('PUT', `/api/v1/users/${user.id}/quota`, { body: { disk_gb: -1 } })).statusCode, 200);
      await durableOf(t, s.id, user.key);
      const counted = await checkpoint(t, s.id, { key: user.key });
      assert.equal(counted.status, 403);
      assert.match(counted.body.detail, /CORRAL_MAX_CHECKPOINTS_PER_USER/);
    } finally {
      await t.close();
    }
  });
});

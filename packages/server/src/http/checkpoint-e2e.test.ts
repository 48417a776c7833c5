/**
 * Issue 16's end-to-end case through the API on the real drivers (oci and docker): write files,
 * start a background process, checkpoint, change files, fork 8 sandboxes from the checkpoint and
 * restore one the way the Prime SDK does. Every copy sees the checkpointed files and none of the
 * later changes; a filesystem checkpoint carries no processes. A memory checkpoint (oci) carries a
 * background process on into 8 forks; docker refuses it with a clear 409.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type GatewaySandbox, execCall, waitForStatus } from '../gateway/test-support.js';
import { imageBuildMissing, startImageBuildServer } from '../testing/image-build-server.js';
import { driverMissing, eventually, unavailableSuite } from '../testing/runtime-available.js';
import type { ListeningTestServer } from '../testing/test-server.js';
import { criuCandidates } from '../runtime/oci/criu-checkpoint.js';

const CACHE = process.env.CORRAL_CACHE_DIR ?? new URL('../../../../.cache', import.meta.url).pathname;

interface Checkpoint {
  id: string;
  state: string;
  depth: number;
  parent_id: string | null;
  docker_image: string;
  error: string | null;
}

/** A gateway handle for a RUNNING sandbox (a token from `POST /sandbox/{id}/auth`). */
async function gatewayOf(server: ListeningTestServer, id: string): Promise<GatewaySandbox> {
  await waitForStatus(server, id, 'RUNNING', 180_000);
  // Over the listening socket: the gateway URL names the host the request came to.
  const auth = await fetch(`${server.url}/api/v1/sandbox/${id}/auth`, { method: 'POST', headers: { authorization: `Bearer ${server.t.adminKey}` } });
  assert.equal(auth.status, 200);
  const a = (await auth.json()) as { token: string; gateway_url: string; user_ns: string; job_id: string };
  return { id, token: a.token, userNs: a.user_ns, base: `${a.gateway_url}/${a.user_ns}/${a.job_id}` };
}

async function sh(sb: GatewaySandbox, command: string): Promise<string> {
  const r = await execCall(sb, { command, timeout: 60 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.exit_code, 0, `${command}: ${r.body.stderr}`);
  return r.body.stdout;
}

async function durable(server: ListeningTestServer, id: string): Promise<Checkpoint> {
  return eventually(async () => {
    const c = (await server.t.request('GET', `/api/v1/sandbox/checkpoints/${id}`)).json<Checkpoint>();
    if (c.state === 'FAILED') throw new Error(`checkpoint ${id} failed: ${c.error ?? ''}`);
    return c.state === 'DURABLE' ? c : undefined;
  }, 180_000, `checkpoint ${id} DURABLE`);
}

/** Ten sandboxes at once stay within admission's CPU and memory capacity on a small host. */
const SMALL = { cpu_cores: 0.25, memory_gb: 0.25 };

/** What a copy of the sandbox reads of the state the test made and changed. */
const READ_STATE = [
  'cat /sandbox-workspace/notes.txt',
  'cat /opt/app/config',
  'test -e /etc/group && echo group-present || echo group-deleted',
  'test -e /sandbox-workspace/later.txt && echo later-present || echo later-absent',
  'cat /tmp/counter',
].join('; ');

for (const driver of ['oci', 'docker'] as const) {
  const missing = imageBuildMissing(driver) ?? driverMissing(driver);
  if (missing !== undefined) {
    unavailableSuite(`checkpoints end to end (${driver})`, missing);
    continue;
  }
  describe(`checkpoints end to end through the API (${driver} driver)`, { timeout: 900_000 }, () => {
    let server: ListeningTestServer;
    before(async () => {
      // Memory checkpoints (oci): runc with the CRIU scripts/ensure-criu.sh builds.
      server = await startImageBuildServer(`ckpt-e2e-${driver}`, { createWaitMs: 0, ociRuntime: 'runc', criu: criuCandidates(CACHE)[0]! }, driver === 'oci' ? ['busybox', 'python'] : ['busybox'], driver);
    });
    after(async () => server?.close());

    it('checkpoint, later changes, 8 forks and a Prime-style restore: each copy has the checkpointed files, none of the later changes, and no processes', async () => {
      const created = await server.t.request('POST', '/api/v1/sandbox', {
        // The start command is the background process: it counts in /tmp/counter, in the origin only.
        body: { name: 'origin', docker_image: 'busybox:latest', start_command: 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done', ...SMALL, disk_size_gb: 1 },
      });
      assert.equal(created.statusCode, 201, created.body);
      const origin = await gatewayOf(server, created.json<{ id: string }>().id);
      await sh(origin, [
        'echo before > /sandbox-workspace/notes.txt',
        'mkdir -p /opt/app && echo v1 > /opt/app/config',
        'rm /etc/group',
        'while ! test -s /tmp/counter; do sleep 0.1; done',
      ].join(' && '));

      const asked = await server.t.request('POST', `/api/v1/sandbox/${origin.id}/checkpoints`);
      assert.equal(asked.statusCode, 201, asked.body);
      const checkpoint = await durable(server, asked.json<Checkpoint>().id);
      assert.deepEqual([checkpoint.depth, checkpoint.parent_id, checkpoint.docker_image], [1, null, 'busybox:latest']);

      // Changes after the checkpoint, in the origin, which keeps running (and counting).
      const countAtChange = Number((await sh(origin, 'cat /tmp/counter')).trim());
      await sh(origin, 'echo after > /sandbox-workspace/notes.txt && echo v2 > /opt/app/config && touch /sandbox-workspace/later.txt && echo restored > /etc/group');
      await eventually(async () => (Number((await sh(origin, 'cat /tmp/counter')).trim()) > countAtChange ? true : undefined), 30_000, 'the origin keeps counting');

      const forked = await server.t.request('POST', `/api/v1/sandbox/checkpoints/${checkpoint.id}/fork`, { body: { count: 8, name: 'fork', ...SMALL } });
      assert.equal(forked.statusCode, 201, forked.body);
      const forks = forked.json<{ sandboxes: { id: string; checkpointId: string | null; dockerImage: string }[] }>().sandboxes;
      assert.equal(forks.length, 8);
      assert.ok(forks.every((f) => f.checkpointId === checkpoint.id && f.dockerImage === 'busybox:latest'));

      // Prime's restore: POST /sandbox with checkpoint_id, vm true, no docker_image or disk size.
      const restored = await server.t.request('POST', '/api/v1/sandbox', { body: { name: 'restored', checkpoint_id: checkpoint.id, vm: true, start_command: 'tail -f /dev/null', ...SMALL } });
      assert.equal(restored.statusCode, 201, restored.body);

      const copies = await Promise.all([...forks.map((f) => f.id), restored.json<{ id: string }>().id].map((id) => gatewayOf(server, id)));
      const states = await Promise.all(copies.map((copy) => sh(copy, READ_STATE)));
      for (const [i, state] of states.entries()) {
        const [notes, config, group, later, counter] = state.trim().split('\n');
        assert.deepEqual([notes, config, group, later], ['before', 'v1', 'group-deleted', 'later-absent'], `copy ${i}`);
        assert.ok(Number(counter) > 0 && Number(counter) <= countAtChange, `copy ${i}: the counter as checkpointed (${counter}), at most ${countAtChange}`);
      }
      // A filesystem checkpoint carries no processes: nothing counts on in a copy.
      const first = copies[0]!;
      const counted = await sh(first, 'cat /tmp/counter; sleep 1; cat /tmp/counter');
      const [c1, c2] = counted.trim().split('\n');
      assert.equal(c1, c2, 'no counter runs in a copy');
      // Copies are independent of each other.
      await sh(first, 'echo mine > /sandbox-workspace/notes.txt');
      assert.equal((await sh(copies[1]!, 'cat /sandbox-workspace/notes.txt')).trim(), 'before');

      // A checkpoint of a copy stacks on the first one.
      const second = await server.t.request('POST', `/api/v1/sandbox/${first.id}/checkpoints`);
      assert.equal(second.statusCode, 201, second.body);
      const child = await durable(server, second.json<Checkpoint>().id);
      assert.deepEqual([child.parent_id, child.depth], [checkpoint.id, 2]);

      if (driver === 'docker') {
        // Memory checkpoints are refused where the driver cannot take them, with the reason.
        const memory = await server.t.request('POST', `/api/v1/sandbox/${origin.id}/checkpoints`, { body: { memory: true } });
        assert.equal(memory.statusCode, 409, memory.body);
        assert.equal(memory.json<{ code: string }>().code, 'MEMORY_CHECKPOINT_UNSUPPORTED');
      }

      // Deleting the checkpoint leaves the sandboxes made from it working.
      assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/checkpoints/${child.id}`)).statusCode, 200);
      assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/checkpoints/${checkpoint.id}`)).statusCode, 200);
      assert.equal((await sh(copies[2]!, 'cat /opt/app/config')).trim(), 'v1');
      for (const sb of [origin, ...copies]) assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/${sb.id}`)).statusCode, 200);
    });

    if (driver === 'oci') {
      it('a memory checkpoint: a background process started by a command continues in each of 8 forks, with the checkpointed files and none of the later changes', async () => {
        const created = await server.t.request('POST', '/api/v1/sandbox', { body: { name: 'memory-origin', docker_image: 'busybox:latest', ...SMALL, disk_size_gb: 1 } });
        assert.equal(created.statusCode, 201, created.body);
        const origin = await gatewayOf(server, created.json<{ id: string }>().id);
        // The background process keeps its count in the shell's memory only; the file is its output.
        await sh(origin, "echo before > /sandbox-workspace/notes.txt; sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done' >/dev/null 2>&1 &");
        await eventually(async () => (Number((await sh(origin, 'cat /tmp/counter 2>/dev/null || echo 0')).trim()) >= 5 ? true : undefined), 30_000, 'the counter to start');

        const asked = await server.t.request('POST', `/api/v1/sandbox/${origin.id}/checkpoints`, { body: { memory: true } });
        assert.equal(asked.statusCode, 201, asked.body);
        const checkpoint = await durable(server, asked.json<Checkpoint>().id);
        assert.equal((checkpoint as Checkpoint & { memory: boolean }).memory, true);
        const atCapture = Number((await sh(origin, 'cat /tmp/counter')).trim());
        await sh(origin, 'echo after > /sandbox-workspace/notes.txt && touch /sandbox-workspace/later.txt');

        const forked = await server.t.request('POST', `/api/v1/sandbox/checkpoints/${checkpoint.id}/fork`, { body: { count: 8, name: 'memory-fork', ...SMALL } });
        assert.equal(forked.statusCode, 201, forked.body);
        const copies = await Promise.all(forked.json<{ sandboxes: { id: string }[] }>().sandboxes.map((f) => gatewayOf(server, f.id)));
        assert.equal(copies.length, 8);
        for (const [i, copy] of copies.entries()) {
          const [notes, later, counter] = (await sh(copy, 'cat /sandbox-workspace/notes.txt; test -e /sandbox-workspace/later.txt && echo later-present || echo later-absent; cat /tmp/counter')).trim().split('\n');
          assert.deepEqual([notes, later], ['before', 'later-absent'], `copy ${i}`);
          // Restored, not restarted: the count goes on from about where it was (a fresh process would start at 1).
          assert.ok(Number(counter) >= atCapture - 20, `copy ${i}: counter ${counter}, about ${atCapture} at the checkpoint`);
          await eventually(async () => (Number((await sh(copy, 'cat /tmp/counter')).trim()) > Number(counter) + 3 ? true : undefined), 30_000, `copy ${i} to go on counting`);
        }
        // The copies count independently: writing one's file does not touch another's.
        await sh(copies[0]!, 'echo mine > /sandbox-workspace/notes.txt');
        assert.equal((await sh(copies[1]!, 'cat /sandbox-workspace/notes.txt')).trim(), 'before');

        // A fork of a copy (its own memory checkpoint, depth 2) goes on counting from where the copy was.
        const again = await server.t.request('POST', `/api/v1/sandbox/${copies[0]!.id}/fork`, { body: { count: 1, memory: true, ...SMALL } });
        assert.equal(again.statusCode, 201, again.body);
        const second = again.json<{ checkpoint: Checkpoint; sandboxes: { id: string }[] }>();
        const child = (await server.t.request('GET', `/api/v1/sandbox/checkpoints/${second.checkpoint.id}`)).json<Checkpoint>();
        assert.deepEqual([child.parent_id, child.depth], [checkpoint.id, 2]);
        const grandchild = await gatewayOf(server, second.sandboxes[0]!.id);
        const grandCount = Number((await sh(grandchild, 'cat /tmp/counter')).trim());
        assert.ok(grandCount >= atCapture, `the fork of a copy counts from ${grandCount}`);
        await eventually(async () => (Number((await sh(grandchild, 'cat /tmp/counter')).trim()) > grandCount + 3 ? true : undefined), 30_000, 'the fork of a copy to go on counting');
        assert.equal((await sh(grandchild, 'cat /sandbox-workspace/notes.txt')).trim(), 'mine');

        for (const id of [second.checkpoint.id, checkpoint.id]) assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/checkpoints/${id}`)).statusCode, 200);
        for (const sb of [origin, ...copies, grandchild]) assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/${sb.id}`)).statusCode, 200);
      });

      it('a Python interpreter with loaded state resumes mid-loop in each fork (POST /sandbox/{id}/fork with memory)', async () => {
        const created = await server.t.request('POST', '/api/v1/sandbox', { body: { name: 'python-origin', docker_image: 'python:3.11-slim', ...SMALL, disk_size_gb: 1 } });
        assert.equal(created.statusCode, 201, created.body);
        const origin = await gatewayOf(server, created.json<{ id: string }>().id);
        // State only the interpreter holds: a table built once, and a loop position.
        const program = [
          'import time, os',
          'table = {i: i * i for i in range(200000)}',
          'token = os.urandom(8).hex()',
          'step = 0',
          'while True:',
          '    step += 1',
          "    open('/tmp/progress.tmp', 'w').write(f'{step} {len(table)} {table[199999]} {token}')",
          "    os.replace('/tmp/progress.tmp', '/tmp/progress')",
          '    time.sleep(0.05)',
        ].join('\n');
        await sh(origin, `cat > /tmp/loop.py <<'EOF'\n${program}\nEOF\nnohup python3 /tmp/loop.py >/dev/null 2>&1 &`);
        const progress = async (sb: GatewaySandbox): Promise<{ step: number; size: number; last: number; token: string }> => {
          const [step, size, last, token] = (await sh(sb, 'cat /tmp/progress 2>/dev/null || echo 0 0 0 none')).trim().split(' ');
          return { step: Number(step), size: Number(size), last: Number(last), token: token ?? '' };
        };
        await eventually(async () => ((await progress(origin)).step >= 5 ? true : undefined), 60_000, 'the interpreter to loop');
        const forked = await server.t.request('POST', `/api/v1/sandbox/${origin.id}/fork`, { body: { count: 2, memory: true, ...SMALL } });
        assert.equal(forked.statusCode, 201, forked.body);
        const result = forked.json<{ checkpoint: Checkpoint & { memory: boolean }; sandboxes: { id: string }[] }>();
        assert.equal(result.checkpoint.memory, true);
        const atFork = await progress(origin);
        const copies = await Promise.all(result.sandboxes.map((s) => gatewayOf(server, s.id)));
        for (const copy of copies) {
          const first = await progress(copy);
          // The same interpreter: its table, its random token, and a step count that goes on rather than restarting.
          assert.deepEqual([first.size, first.last, first.token], [200000, 199999 * 199999, atFork.token]);
          assert.ok(first.step >= atFork.step - 40, `the copy is at step ${first.step}, the origin was at ${atFork.step}`);
          await eventually(async () => ((await progress(copy)).step > first.step + 3 ? true : undefined), 30_000, 'the copy to go on looping');
        }
        assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/checkpoints/${result.checkpoint.id}`)).statusCode, 200);
        for (const sb of [origin, ...copies]) assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/${sb.id}`)).statusCode, 200);
      });
    }
  });
}

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { CorralClient } from './client.js';
import {
  CommandTimeoutError,
  ConnectionError,
  NotFoundError,
  RateLimitError,
  SandboxNotRunningError,
  UnauthorizedError,
  ValidationError,
} from './errors.js';
import { Sandbox } from './sandbox.js';
import { type ListeningServer, TEST_IMAGE, dockerMissing, needDocker, recordingFetch, startServer } from './testing/sdk-test-support.js';

const PYTHON_IMAGE = 'python:3.11-slim';

const missing = dockerMissing();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe('SDK against a real server', { concurrency: true, timeout: 120_000 }, () => {
    let server: ListeningServer;
    let client: CorralClient;
    before(async () => {
      if (missing) return;
      // A long hold, so a slow start on a loaded machine still answers the create RUNNING.
      server = await startServer({ createWaitMs: 20_000 });
      client = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey });
    });
    after(async () => server?.close());

    it('creates, waits, runs commands, moves files and deletes', async (t) => {
      if (!needDocker(t)) return;
      const sandbox = await Sandbox.create(client, { image: TEST_IMAGE, env: { GREETING: 'hello' }, labels: ['sdk-life'], memoryGb: 0.5 });
      assert.match(sandbox.id, /^[a-z0-9]{24}$/);
      await sandbox.waitUntilRunning();
      assert.deepEqual(await sandbox.exec('echo "$GREETING $EXTRA"; pwd', { env: { EXTRA: 'there' }, cwd: '/tmp' }), {
        stdout: 'hello there\n/tmp\n',
        stderr: '',
        exitCode: 0,
      });
      assert.equal((await sandbox.exec('echo oops >&2; exit 3')).exitCode, 3);
      assert.equal((await sandbox.exec('id -u', { user: '1000' })).stdout, '1000\n');
      await assert.rejects(sandbox.exec('echo partial; sleep 5', { timeout: 1 }), (error: unknown) => {
        assert.ok(error instanceof CommandTimeoutError);
        assert.equal(error.timeoutSeconds, 1);
        assert.match(error.message, /timed out after 1s.*background job/);
        return true;
      });

      await sandbox.writeText('/tmp/deep/er/note.txt', 'line one\nline two\n');
      assert.equal(await sandbox.readText('/tmp/deep/er/note.txt'), 'line one\nline two\n');
      const window = await sandbox.readFile('/tmp/deep/er/note.txt', { offset: -9, length: 4 });
      assert.equal(window.content, 'line');
      assert.equal(window.totalSize, 18);
      assert.equal(window.truncated, true);
      await assert.rejects(sandbox.readFile('/tmp/missing.txt'), NotFoundError);

      const payload = randomBytes(3 * 1024 * 1024 + 17);
      let uploaded = 0;
      const up = await sandbox.uploadFile('/sandbox-workspace/blob.bin', Readable.from([payload.subarray(0, 1_000_000), payload.subarray(1_000_000)]), {
        onProgress: (n) => (uploaded = n),
      });
      assert.equal(up.size, payload.length);
      assert.equal(uploaded, payload.length);
      const download = await sandbox.downloadFile('/sandbox-workspace/blob.bin');
      assert.equal(download.size, payload.length);
      const hash = createHash('sha256');
      for await (const chunk of download) hash.update(chunk as Buffer);
      assert.equal(hash.digest('hex'), createHash('sha256').update(payload).digest('hex'));

      assert.equal(typeof (await sandbox.logs()), 'string');
      await sandbox.delete();
      await assert.rejects(sandbox.exec('true'), (error: unknown) => {
        assert.ok(error instanceof SandboxNotRunningError, String(error));
        assert.ok(['TERMINATED', 'SANDBOX_NOT_FOUND'].includes(error.kind), error.kind);
        assert.match(error.message, /no longer running/);
        return true;
      });
    });

    it('batches concurrent waits into status:batchGet and bulk-deletes by label', async (t) => {
      if (!needDocker(t)) return;
      const rec = recordingFetch();
      const batching = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey, fetch: rec.fetch });
      const label = `batch-${randomBytes(3).toString('hex')}`;
      // Not held (holdMs 0), so the waits have something to poll.
      const sandboxes = await Promise.all([0, 1, 2].map(() => Sandbox.create(batching, { image: TEST_IMAGE, labels: [label], memoryGb: 0.25, holdMs: 0 })));
      await Promise.all(sandboxes.map((s) => s.waitUntilRunning({ probe: false })));
      const reads = rec.calls.filter((c) => c.path.endsWith('status:batchGet') || (c.method === 'GET' && /\/sandbox\/[a-z0-9]{24}$/.test(c.path)));
      assert.ok(reads.length > 0);
      assert.ok(reads.every((c) => c.path.endsWith('status:batchGet')), 'every status read is a batch');
      const first = JSON.parse(reads[0]?.body ?? '{}') as { sandbox_ids: string[] };
      assert.deepEqual(new Set(first.sandbox_ids), new Set(sandboxes.map((s) => s.id)), 'the first poll asks for all three at once');
      const result = await batching.sandboxes.bulkDelete({ labels: [label] });
      assert.deepEqual(new Set(result.succeeded), new Set(sandboxes.map((s) => s.id)));
    });

    it('needs no status poll when create answers RUNNING: the server held it while the sandbox started', async (t) => {
      if (!needDocker(t)) return;
      const rec = recordingFetch();
      const held = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey, fetch: rec.fetch });
      const sandbox = await Sandbox.create(held, { image: TEST_IMAGE, memoryGb: 0.25 });
      assert.equal(sandbox.info.status, 'RUNNING');
      await sandbox.waitUntilRunning();
      const afterCreate = rec.calls.slice(1).map((c) => `${c.method} ${c.path.replace(sandbox.id, 'ID')}`);
      assert.deepEqual(afterCreate.filter((c) => /status:batchGet|GET \/api\/v1\/sandbox\/ID$/.test(c)), [], 'no status read');
      assert.equal((await sandbox.exec('echo hi')).stdout, 'hi\n');
      await sandbox.delete();
    });

    it('streams: stdin and EOF, exit codes, a PTY with resize, signals', async (t) => {
      if (!needDocker(t)) return;
      const sandbox = await Sandbox.create(client, { image: TEST_IMAGE, memoryGb: 0.25 });
      try {
        await sandbox.waitUntilRunning();
        let out = '';
        let err = '';
        const cat = await sandbox.execStream(['sh', '-c', 'cat; echo bye >&2'], { stdin: true, onStdout: (b) => (out += b), onStderr: (b) => (err += b) });
        cat.write('hello ');
        cat.write(Buffer.from('world\n'));
        cat.closeStdin();
        assert.deepEqual(await cat.wait(), { exitCode: 0, timedOut: false });
        assert.equal(out, 'hello world\n');
        assert.equal(err, 'bye\n');

        assert.equal((await (await sandbox.execStream('exit 7')).wait()).exitCode, 7);

        let screen = '';
        const tty = await sandbox.execStream(['sh'], { tty: { rows: 10, cols: 40 }, onStdout: (b) => (screen += b) });
        tty.write('stty size\n');
        await eventually(async () => (/10 40/.test(screen) ? true : undefined), 10_000, 'stty size 10 40');
        tty.resize(20, 60);
        tty.write('stty size\n');
        await eventually(async () => (/20 60/.test(screen) ? true : undefined), 10_000, 'stty size 20 60');
        tty.write('exit 5\n');
        assert.equal((await tty.wait()).exitCode, 5);

        const sleeper = await sandbox.execStream(['sleep', '30']);
        sleeper.signal('SIGKILL');
        const killed = await sleeper.wait();
        assert.notEqual(killed.exitCode, 0);
      } finally {
        await sandbox.delete();
      }
    });

    it('reports not-running kinds: a start command that exits, and OOM', async (t) => {
      if (!needDocker(t)) return;
      const exits = await Sandbox.create(client, { image: TEST_IMAGE, startCommand: 'sleep 0.5; exit 3', memoryGb: 0.25 });
      const oom = await Sandbox.create(client, { image: TEST_IMAGE, memoryGb: 0.1, startCommand: 'sleep 1; x=$(head -c 300000000 /dev/zero | tr "\\0" a); sleep 100' });
      await assert.rejects(exits.waitUntilRunning({ timeoutMs: 60_000 }).then(() => sleep(3000)).then(() => exits.exec('true')), (error: unknown) => {
        assert.ok(error instanceof SandboxNotRunningError, String(error));
        assert.equal(error.kind, 'TERMINATED');
        assert.equal(error.sandboxStatus, 'TERMINATED');
        return true;
      });
      await eventually(async () => ((await oom.refresh()).status === 'ERROR' ? true : undefined), 60_000, 'the OOM kill');
      await assert.rejects(oom.exec('true'), (error: unknown) => {
        assert.ok(error instanceof SandboxNotRunningError, String(error));
        assert.equal(error.kind, 'OOM_KILLED');
        assert.match(error.message, /memoryGb/);
        return true;
      });
      await assert.rejects(oom.waitUntilRunning(), (error: unknown) => error instanceof SandboxNotRunningError && error.kind === 'OOM_KILLED');
    });

    it('maps errors to types with advice: 404, 401, 422 fields, unreachable server; idempotent create; ports and tunnels', async (t) => {
      if (!needDocker(t)) return;
      await assert.rejects(client.sandboxes.get('aaaaaaaaaaaaaaaaaaaaaaaa'), (error: unknown) => {
        assert.ok(error instanceof NotFoundError);
        assert.equal(error.code, 'SANDBOX_NOT_FOUND');
        assert.match(error.message, /corral sandbox list/);
        return true;
      });
      await assert.rejects(Sandbox.connect(client, 'aaaaaaaaaaaaaaaaaaaaaaaa'), NotFoundError);
      await assert.rejects(client.gateway.exec('aaaaaaaaaaaaaaaaaaaaaaaa', 'true'), NotFoundError);
      const badKey = new CorralClient({ apiUrl: server.url, apiKey: 'corral_nope' });
      await assert.rejects(badKey.me(), (error: unknown) => error instanceof UnauthorizedError && /CORRAL_API_KEY/.test(error.message));
      await assert.rejects(Sandbox.create(client, { image: TEST_IMAGE, cpuCores: 99 }), (error: unknown) => {
        assert.ok(error instanceof ValidationError);
        assert.deepEqual(error.fields.map((f) => f.param), ['cpu_cores']);
        return true;
      });
      const down = new CorralClient({ apiUrl: `http://127.0.0.1:${await freePort()}`, apiKey: 'x', retry: { maxRetries: 1, baseDelayMs: 10 } });
      await assert.rejects(down.me(), (error: unknown) => error instanceof ConnectionError && /corral serve/.test(error.message));

      const key = `idem-${randomBytes(4).toString('hex')}`;
      const a = await Sandbox.create(client, { image: TEST_IMAGE, idempotencyKey: key, memoryGb: 0.25 });
      const b = await Sandbox.create(client, { image: TEST_IMAGE, idempotencyKey: key, memoryGb: 0.25 });
      assert.equal(a.id, b.id, 'the same idempotency key gives the same sandbox');
      const exposure = await client.sandboxes.expose(a.id, { port: 8000 });
      assert.deepEqual((await client.sandboxes.listExposedPorts(a.id)).exposures.map((e) => e.exposure_id), [exposure.exposure_id]);
      const tunnel = await client.tunnels.create({ local_port: 8000 });
      assert.match(tunnel.url, /^https?:\/\//);
      await a.delete();
    });

    it('runs a background job exactly like the Prime SDK (python:3.11-slim, which has nohup)', async (t) => {
      if (!needDocker(t, PYTHON_IMAGE)) return;
      const sandbox = await Sandbox.create(client, { image: PYTHON_IMAGE, memoryGb: 0.5 });
      try {
        await sandbox.waitUntilRunning();
        // The job waits for /tmp/go, so it is still running when first asked, however slow the host.
        const job = await sandbox.startBackgroundJob('while [ ! -e /tmp/go ]; do sleep 0.1; done; echo "out $V"; echo err >&2; exit 4', { env: { V: "it's" }, cwd: '/tmp' });
        assert.match(job.jobId, /^[0-9a-f]{8}$/);
        assert.equal((await sandbox.getBackgroundJob(job)).completed, false);
        await sandbox.exec('touch /tmp/go');
        const done = await eventually(async () => {
          const s = await sandbox.getBackgroundJob(job);
          return s.completed ? s : undefined;
        }, 20_000, 'the background job');
        assert.equal(done.exitCode, 4);
        assert.equal(done.stdout, "out it's\n");
        assert.equal(done.stderr, 'err\n');
        const run = await sandbox.runBackgroundJob('python3 -c "print(6 * 7)"', { pollIntervalMs: 200, timeout: 20 });
        assert.equal(run.stdout, '42\n');
      } finally {
        await sandbox.delete();
      }
    });

  it('a gateway 401 (expired token) triggers one re-auth and a retry', async (t) => {
    if (!needDocker(t)) return;
    // Tokens live 2–3 s (expiry is rounded up to whole seconds): long enough that the fresh token
    // survives its retry on a loaded machine, short enough to outwait.
    const server = await startServer({ gatewayTokenTtlSeconds: 2 });
    try {
      const rec = recordingFetch();
      // The client's clock runs ten minutes late, so it keeps using a token the server has expired.
      const client = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey, fetch: rec.fetch, now: () => Date.now() - 600_000 });
      const sandbox = await Sandbox.create(client, { image: TEST_IMAGE, memoryGb: 0.25 });
      await sandbox.waitUntilRunning();
      const count = (suffix: string): number => rec.calls.filter((c) => c.path.endsWith(suffix)).length;
      const [auths, execs] = [count('/auth'), count('/exec')];
      await sleep(3100);
      assert.equal((await sandbox.exec('echo again')).stdout, 'again\n');
      assert.equal(count('/auth'), auths + 1, 'one re-auth');
      assert.equal(count('/exec'), execs + 2, 'the refused exec and its retry');
      await sandbox.delete();
    } finally {
      await server.close();
    }
  });

it('429s are retried after Retry-After (rate limits on), or surface as RateLimitError', async () => {
  const server = await startServer({ runtime: 'none', rateLimits: true });
  try {
    const created = await server.t.request('POST', '/api/v1/sandbox', { body: { name: 'rl', docker_image: 'busybox' } });
    const { id } = created.json<{ id: string }>();
    const hit = (): Promise<Response> => fetch(`${server.url}/api/v1/sandbox/${id}/expose`, { headers: { authorization: `Bearer ${server.t.adminKey}` } });
    const started = Date.now();
    for (let i = 0; i < 60; i++) assert.equal((await hit()).status, 200);
    assert.equal((await hit()).status, 429);

    const impatient = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey, rateLimitRetry: { maxRetries: 0 } });
    await assert.rejects(impatient.sandboxes.listExposedPorts(id), (error: unknown) => {
      assert.ok(error instanceof RateLimitError);
      assert.ok((error.retryAfterSeconds ?? 0) > 0);
      return true;
    });

    const rec = recordingFetch();
    const patient = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey, fetch: rec.fetch });
    assert.deepEqual(await patient.sandboxes.listExposedPorts(id), { exposures: [] });
    assert.ok(rec.calls.length >= 2, `retried (${rec.calls.length} calls)`);
    assert.ok(Date.now() - started >= 58_000, 'waited for the window to reset');
  } finally {
    await server.close();
  }
});
});

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type SandboxRuntime, buildImage, createRuntime, loadConfig, createRuntimeImages, openStore } from '@corral/server';
import { driverMissing, specFixture, unavailableSuite } from '@corral/server/testing';
import { spawnCli, waitForHealthy } from '../testing/spawn-cli.js';

const IMAGE = process.env.CORRAL_TEST_IMAGE ?? 'corral-test/busybox:latest';
const KEY = `corral_recovery_${randomBytes(8).toString('hex')}`;

async function poll<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

for (const driver of ['docker', 'oci'] as const) {
  const missing = driverMissing(driver);
  if (missing) {
    unavailableSuite(`recovery after SIGKILL (${driver})`, missing);
    continue;
  }

  describe(`recovery after SIGKILL (${driver})`, { timeout: 240_000 }, () => {
    const dataDir = mkdtempSync(join(tmpdir(), `corral-recovery-${driver}-`));
    const instance = `rec-${randomBytes(4).toString('hex')}`;
    const env = {
      CORRAL_DATA_DIR: dataDir,
      CORRAL_PORT: String(20_000 + Math.floor(Math.random() * 20_000)),
      CORRAL_RUNTIME: driver,
      CORRAL_INSTANCE_ID: instance,
      CORRAL_BOOTSTRAP_API_KEY: KEY,
      CORRAL_RECONCILE_INTERVAL_MS: '500',
      CORRAL_LOG_LEVEL: 'warn',
    };
    const base = `http://127.0.0.1:${env.CORRAL_PORT}`;
    let server: ChildProcess | undefined;
    let runtime: SandboxRuntime | null = null;

    const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const response = await fetch(`${base}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${KEY}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      return { status: response.status, json: (await response.json()) as Record<string, unknown> };
    };
    const status = async (id: string): Promise<Record<string, unknown>> => (await api('GET', `/sandbox/${id}`)).json;
    const start = async (): Promise<void> => {
      server = spawnCli(['serve'], env);
      server.stderr?.on('data', () => undefined);
      await waitForHealthy(`${base}/healthz`, 60_000);
    };

    after(async () => {
      if (server && server.exitCode === null) {
        server.kill('SIGKILL');
        await once(server, 'exit');
      }
      runtime ??= await createRuntime(loadConfig({ env: { ...env } }));
      for (const c of (await runtime?.list()) ?? []) await runtime?.remove(c.runtimeId);
      await runtime?.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('re-adopts running sandboxes, marks vanished ones, provisions pending ones and removes orphans', async () => {
      if (driver === 'oci') await buildImage('busybox', IMAGE, await createRuntimeImages({ runtime: 'oci', dataDir }));
      await start();
      const ids: string[] = [];
      for (const name of ['survivor', 'vanished', 'ended']) {
        const created = await api('POST', '/sandbox', { name, docker_image: IMAGE, labels: ['recovery'] });
        assert.equal(created.status, 201, JSON.stringify(created.json));
        ids.push(created.json.id as string);
      }
      const [survivor, vanished, ended] = ids as [string, string, string];
      for (const id of ids) await poll(`${id} RUNNING`, async () => ((await status(id)).status === 'RUNNING' ? true : undefined));

      server?.kill('SIGKILL');
      await once(server as ChildProcess, 'exit');

      // While the server is down: one container disappears, one sandbox's start command ends,
      // a stray container of this instance appears, and a row is left PENDING.
      runtime = await createRuntime(loadConfig({ env: { ...env } }));
      assert.ok(runtime);
      const containers = new Map((await runtime.list()).map((c) => [c.sandboxId, c]));
      assert.equal(containers.size, 3, 'SIGKILL left the sandboxes running');
      await runtime.remove(containers.get(vanished)?.runtimeId ?? '');
      const killer = await runtime.exec(containers.get(ended)?.runtimeId ?? '', { argv: ['/bin/sh', '-c', 'kill -TERM 1'] });
      killer.stdout.resume();
      killer.stderr.resume();
      await killer.wait().catch(() => undefined);
      const orphan = await runtime.create(
        specFixture({
          sandboxId: `orphan${randomBytes(9).toString('hex')}`,
          image: IMAGE,
          cpuCores: 0.5,
          memoryBytes: 64 * 1024 * 1024,
          diskBytes: 256 * 1024 * 1024,
          pidsLimit: 64,
        }),
      );
      await runtime.close();
      runtime = null;
      const store = await openStore({ kind: 'sqlite', path: join(dataDir, 'corral.db') });
      const template = await store.getSandbox(survivor);
      assert.ok(template);
      const pendingId = `pending${randomBytes(8).toString('hex')}`.slice(0, 24);
      await store.insertSandbox({ ...template, id: pendingId, status: 'PENDING', runtimeId: null, startedAt: null, idempotencyKey: null });
      await store.close();

      await start();
      // Startup recovery runs before /healthz answers 200.
      assert.equal((await status(survivor)).status, 'RUNNING');
      const lost = await status(vanished);
      assert.equal(lost.status, 'ERROR');
      assert.equal(lost.errorType, 'RUNTIME_LOST');
      await poll('the ended sandbox to be marked', async () => ((await status(ended)).status === 'TERMINATED' ? true : undefined));
      await poll('the pending sandbox to run', async () => ((await status(pendingId)).status === 'RUNNING' ? true : undefined));

      // The survivor still works through the gateway.
      const auth = (await api('POST', `/sandbox/${survivor}/auth`)).json as { token: string; gateway_url: string; user_ns: string; job_id: string };
      const exec = await fetch(`${auth.gateway_url}/${auth.user_ns}/${auth.job_id}/exec`, {
        method: 'POST',
        headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ command: 'echo alive', sandbox_id: survivor, timeout: 10 }),
      });
      assert.equal(exec.status, 200);
      assert.equal(((await exec.json()) as { stdout: string }).stdout, 'alive\n');

      // Every container belongs to a live row and every live row has a container. (A second driver
      // instance reads the on-disk state as it is now; it must not outlive the next server action.)
      runtime = await createRuntime(loadConfig({ env: { ...env } }));
      const after = await poll('the orphan to be removed', async () => {
        const list = (await runtime?.list()) ?? [];
        return list.some((c) => c.runtimeId === orphan.runtimeId) ? undefined : list;
      });
      const live = (await api('GET', '/sandbox?is_active=true&per_page=100')).json.sandboxes as Array<{ id: string }>;
      assert.deepEqual(live.map((s) => s.id).sort(), [survivor, pendingId].sort());
      assert.deepEqual(after.filter((c) => c.running).map((c) => c.sandboxId).sort(), [survivor, pendingId].sort());

      await runtime?.close();
      runtime = null;

      const bulk = await api('DELETE', '/sandbox', { labels: ['recovery'] });
      assert.equal(bulk.status, 200);
      // The two live ones, and the ended one whose container was kept for its logs.
      assert.deepEqual((bulk.json.succeeded as string[]).sort(), [survivor, pendingId, ended].sort());
      // A driver's view of its sandboxes belongs to one process: stop the server, then look afresh.
      server?.kill('SIGTERM');
      await once(server as ChildProcess, 'exit');
      runtime = await createRuntime(loadConfig({ env: { ...env } }));
      assert.deepEqual(await runtime?.list(), [], 'nothing is left after the delete');
    });
  });
}

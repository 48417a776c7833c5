import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '../images/image-catalog.js';
import { createRuntimeImages } from '../runtime/create-runtime.js';
import { TEST_IMAGE, driverMissing, eventually, unavailableSuite } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

interface Sandbox {
  id: string;
  status: string;
  exitCode: number | null;
  errorType: string | null;
  errorMessage: string | null;
  terminationReason: string | null;
}

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

for (const driver of ['docker', 'oci'] as const) {
  const missing = driverMissing(driver);
  if (missing) {
    unavailableSuite(`sandbox lifecycle on the ${driver} driver`, missing);
    continue;
  }
  describe(`sandbox lifecycle on the ${driver} driver`, { timeout: 180_000 }, () => {
    let t: TestServer;
    before(async () => {
      const dataDir = mkdtempSync(join(tmpdir(), `corral-lc-${driver}-`));
      // The oci driver keeps its own image store: give it the offline test image.
      if (driver === 'oci') await buildImage('busybox', TEST_IMAGE, await createRuntimeImages({ runtime: 'oci', dataDir }));
      t = await startTestServer({ runtime: driver, dataDir, instanceId: `lc-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 300 });
    });
    after(async () => {
      const runtime = t.server.runtime;
      if (runtime) for (const c of await runtime.list()) await runtime.remove(c.runtimeId);
      await t.close();
      rmSync(t.dataDir, { recursive: true, force: true });
    });

    const gone = async (runtimeId: string): Promise<true | undefined> => ((await t.server.runtime!.inspect(runtimeId)) ? undefined : true);
    const create = async (body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<string> => {
      const response = await t.request('POST', '/api/v1/sandbox', { body: { name: 'lc', docker_image: TEST_IMAGE, ...body }, headers });
      assert.equal(response.statusCode, 201, response.body);
      return response.json<Sandbox>().id;
    };
    const get = async (id: string): Promise<Sandbox> => (await t.request('GET', `/api/v1/sandbox/${id}`)).json<Sandbox>();
    const until = (id: string, statuses: string[], timeoutMs = 60_000): Promise<Sandbox> =>
      eventually(async () => {
        const s = await get(id);
        return statuses.includes(s.status) ? s : undefined;
      }, timeoutMs, `${id} to reach ${statuses.join('|')}`);

    it('runs a real container with the env vars and secrets, and deletes it without leftovers', { timeout: 90_000 }, async () => {
      const id = await create({ environment_vars: { GREETING: 'hello' }, secrets: { TOKEN: 's3cret' } });
      const running = await until(id, ['RUNNING', 'ERROR']);
      assert.equal(running.status, 'RUNNING', running.errorMessage ?? '');
      const row = await t.server.store.getSandbox(id);
      assert.ok(row?.runtimeId && (await t.server.runtime!.inspect(row.runtimeId))?.running);
      const exec = await t.server.runtime!.exec(row.runtimeId, { argv: ['/bin/sh', '-c', 'echo "$GREETING $TOKEN"; test -w /sandbox-workspace && echo writable'] });
      exec.stderr.resume();
      const [out, exit] = await Promise.all([collect(exec.stdout), exec.wait()]);
      assert.equal(exit.exitCode, 0);
      assert.equal(out, 'hello s3cret\nwritable\n');
      assert.equal((await t.request('DELETE', `/api/v1/sandbox/${id}`)).statusCode, 200);
      await eventually(() => (gone(row.runtimeId!)), 20_000, 'container removal');
    });

    it('ends with the exit code of a start command that exits', { timeout: 90_000 }, async () => {
      const id = await create({ start_command: 'sleep 1; echo bye; exit 3' });
      const ended = await until(id, ['TERMINATED', 'ERROR']);
      assert.equal(ended.status, 'TERMINATED', ended.errorMessage ?? '');
      assert.equal(ended.exitCode, 3);
      assert.equal(ended.terminationReason, 'exited');
      const logs = (await t.request('GET', `/api/v1/sandbox/${id}/logs`)).json<{ logs: string }>().logs;
      assert.match(logs, /bye/);
    });

    it('ends in ERROR/OOM_KILLED when the sandbox runs out of memory', { timeout: 90_000 }, async () => {
      const id = await create({ memory_gb: 0.1, start_command: 'sleep 1; x=$(head -c 300000000 /dev/zero | tr "\\0" a); sleep 100' });
      const ended = await until(id, ['ERROR', 'TERMINATED']);
      assert.equal(ended.status, 'ERROR');
      assert.equal(ended.errorType, 'OOM_KILLED');
      const context = (await t.request('GET', `/api/v1/sandbox/${id}/error-context`)).json<Sandbox>();
      assert.equal(context.errorType, 'OOM_KILLED');
    });

    it('ends in ERROR/IMAGE_PULL_FAILED with the reason when the image cannot be pulled', { timeout: 90_000 }, async () => {
      const id = await create({ docker_image: '127.0.0.1:1/corral/missing:latest' });
      const ended = await until(id, ['ERROR', 'RUNNING']);
      assert.equal(ended.status, 'ERROR');
      assert.equal(ended.errorType, 'IMAGE_PULL_FAILED');
      assert.ok((ended.errorMessage ?? '').length > 10, 'the registry reason is kept');
      assert.equal((await t.server.runtime!.list()).some((c) => c.sandboxId === id), false);
    });

    it('pulls from a registry that needs credentials only with them', { timeout: 90_000 }, async (c) => {
      const image = '127.0.0.1:5001/private/busybox:latest';
      try {
        execFileSync('curl', ['-s', '-o', '/dev/null', '-m', '2', 'http://127.0.0.1:5001/v2/']);
      } catch {
        if (process.env.CI === 'true') throw new Error('no registry on 127.0.0.1:5001 (scripts/start-registry.sh --auth corral:corral-secret)');
        c.skip('no registry on 127.0.0.1:5001');
        return;
      }
      const dropLocalCopy = (): void => {
        if (driver !== 'docker') return; // A fresh oci data dir has no copy.
        try {
          execFileSync('docker', ['image', 'rm', '-f', image], { stdio: 'ignore' });
        } catch {
          // Not present.
        }
      };
      dropLocalCopy();
      const denied = await create({ docker_image: image });
      const failed = await until(denied, ['ERROR', 'RUNNING']);
      assert.equal(failed.status, 'ERROR');
      assert.equal(failed.errorType, 'IMAGE_PULL_FAILED');
      const credential = await t.request('POST', '/api/v1/template/registry-credentials', {
        body: { name: 'local', server: '127.0.0.1:5001', username: 'corral', password: 'corral-secret' },
      });
      assert.equal(credential.statusCode, 201, credential.body);
      dropLocalCopy();
      const allowed = await create({ docker_image: image, registry_credentials_id: credential.json<{ id: string }>().id });
      const running = await until(allowed, ['RUNNING', 'ERROR']);
      assert.equal(running.status, 'RUNNING', running.errorMessage ?? '');
      await t.request('DELETE', `/api/v1/sandbox/${allowed}`);
    });

    it('times out a sandbox past its lifetime and removes its container', { timeout: 90_000 }, async () => {
      const id = await create({ timeout_minutes: 1 });
      await until(id, ['RUNNING']);
      const row = await t.server.store.updateSandbox(id, { startedAt: new Date(Date.now() - 61_000).toISOString() });
      const ended = await until(id, ['TIMEOUT'], 10_000);
      assert.equal(ended.errorType, 'TIMEOUT');
      await eventually(() => (gone(row!.runtimeId!)), 20_000, 'container removal');
    });

    it('deletes a sandbox while a command runs in it', { timeout: 90_000 }, async () => {
      const id = await create({});
      await until(id, ['RUNNING']);
      const row = await t.server.store.getSandbox(id);
      const exec = await t.server.runtime!.exec(row!.runtimeId!, { argv: ['/bin/sh', '-c', 'sleep 30'] });
      exec.stdout.resume();
      exec.stderr.resume();
      const started = Date.now();
      assert.equal((await t.request('DELETE', `/api/v1/sandbox/${id}`)).statusCode, 200);
      await exec.wait().catch(() => undefined);
      assert.ok(Date.now() - started < 20_000, 'the running command ended with the sandbox');
      await eventually(() => (gone(row!.runtimeId!)), 20_000, 'container removal');
    });

    it('leaves no container when deleted while provisioning', { timeout: 90_000 }, async () => {
      // Not held: the deletes must land while the sandboxes provision.
      const ids = await Promise.all([1, 2, 3].map(() => create({}, { 'x-corral-create-wait': '0' })));
      await Promise.all(ids.map((id) => t.request('DELETE', `/api/v1/sandbox/${id}`)));
      for (const id of ids) assert.equal((await get(id)).status, 'TERMINATED');
      // Provisioning that was under way finishes, sees the delete, and removes what it made.
      await eventually(() => (ids.some((id) => t.server.lifecycle.isProvisioning(id)) ? undefined : true), 60_000, 'provisioning to finish');
      assert.equal((await t.server.runtime!.list()).some((c) => ids.includes(c.sandboxId)), false);
    });
  });
}

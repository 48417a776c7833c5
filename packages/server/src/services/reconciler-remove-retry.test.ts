import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createSandbox, dockerMissing, startGatewayServer, waitForStatus, type GatewayTestServer } from '../gateway/test-support.js';
import { immutableObstacle } from '../runtime/conformance/host-objects.js';

const missing = dockerMissing() ?? (process.getuid?.() !== 0 ? 'needs root for chattr' : undefined);

/** Polls `check` every 200 ms until it holds (fails after `timeoutMs`). */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('a deleted sandbox whose removal failed is removed by the reconciler once it can be (docker driver)', { skip: process.env.CI !== 'true' && missing !== undefined ? missing : false }, () => {
  let server: GatewayTestServer;
  before(async () => {
    server = await startGatewayServer();
  });
  after(async () => {
    await server?.close();
  });

  test('the container stays listed while its removal fails, and the reconciler finishes the removal after the obstacle goes', async () => {
    const runtime = server.t.server.runtime;
    assert.ok(runtime);
    const sb = await createSandbox(server, { network_access: false });
    const container = (await runtime.list()).find((s) => s.sandboxId === sb.id);
    assert.ok(container);
    // The driver writes each sandbox's /etc files under <data dir>/docker-etc/<instance>/<sandbox id>; removal deletes it last.
    const etcRoot = join(server.t.dataDir, 'docker-etc');
    const [instance] = readdirSync(etcRoot);
    assert.ok(instance);
    const etcDir = join(etcRoot, instance, sb.id);
    assert.ok(existsSync(etcDir));
    const lift = immutableObstacle(etcDir);
    try {
      const deleted = await server.t.request('DELETE', `/api/v1/sandbox/${sb.id}`);
      assert.equal(deleted.statusCode, 200, deleted.body);
      await waitForStatus(server, sb.id, 'TERMINATED');
      // The delete's removal and the reconciler's retries (every 500 ms, backing off from 1 s) all fail meanwhile.
      await new Promise((r) => setTimeout(r, 2500));
      const listed = (await runtime.list()).filter((s) => s.runtimeId === container.runtimeId);
      assert.equal(listed.length, 1, 'the half-removed sandbox is still listed');
      assert.equal(listed[0]?.running, false);
    } finally {
      await lift();
    }
    await until(async () => !(await runtime.list()).some((s) => s.runtimeId === container.runtimeId) && !existsSync(etcDir), 30_000, 'the reconciler to finish the removal');
    assert.equal(await runtime.inspect(container.runtimeId), undefined);
  });
});

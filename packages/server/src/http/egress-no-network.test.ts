import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildImage } from '../images/image-catalog.js';
import { createRuntimeImages } from '../runtime/create-runtime.js';
import { TEST_IMAGE, driverMissing, eventually, unavailableSuite } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

interface Sandbox {
  id: string;
  status: string;
  errorMessage: string | null;
  networkAccess: boolean;
  networkAllowlist: string[] | null;
  networkDenylist: string[] | null;
}

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

const missing = driverMissing('oci');
if (missing) {
  unavailableSuite('network_allowlist: [] on the oci driver', missing);
} else {
  describe('network_allowlist: [] on the oci driver', { timeout: 180_000 }, () => {
    let t: TestServer;
    before(async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'corral-egress-'));
      await buildImage('busybox', TEST_IMAGE, await createRuntimeImages({ runtime: 'oci', dataDir }));
      t = await startTestServer({ runtime: 'oci', dataDir, instanceId: `eg-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 300 });
    });
    after(async () => {
      const runtime = t.server.runtime;
      if (runtime) for (const c of await runtime.list()) await runtime.remove(c.runtimeId);
      await t.close();
      rmSync(t.dataDir, { recursive: true, force: true });
    });

    /** Creates a sandbox, waits for RUNNING and returns the interfaces and routing table it sees. */
    const networkOf = async (body: Record<string, unknown>): Promise<{ sandbox: Sandbox; interfaces: string[]; routes: string[] }> => {
      const response = await t.request('POST', '/api/v1/sandbox', { body: { name: 'egress', docker_image: TEST_IMAGE, ...body } });
      assert.equal(response.statusCode, 201, response.body);
      const id = response.json<Sandbox>().id;
      const sandbox = await eventually(async () => {
        const s = (await t.request('GET', `/api/v1/sandbox/${id}`)).json<Sandbox>();
        return ['RUNNING', 'ERROR'].includes(s.status) ? s : undefined;
      }, 60_000, 'RUNNING');
      assert.equal(sandbox.status, 'RUNNING', sandbox.errorMessage ?? '');
      const row = await t.server.store.getSandbox(id);
      const exec = await t.server.runtime!.exec(row!.runtimeId!, { argv: ['/bin/sh', '-c', 'ls /sys/class/net; echo ---; tail -n +2 /proc/net/route'] });
      exec.stderr.resume();
      const [out] = await Promise.all([collect(exec.stdout), exec.wait()]);
      const [ifaces = '', routes = ''] = out.split('---\n');
      assert.equal((await t.request('DELETE', `/api/v1/sandbox/${id}`)).statusCode, 200);
      return { sandbox, interfaces: ifaces.split(/\s+/).filter(Boolean), routes: routes.split('\n').filter(Boolean) };
    };

    it('gives a sandbox created with network_allowlist: [] only lo and no route', async () => {
      const { sandbox, interfaces, routes } = await networkOf({ network_allowlist: [] });
      assert.deepEqual(interfaces, ['lo']);
      assert.deepEqual(routes, []);
      assert.equal(sandbox.networkAccess, false);
      assert.deepEqual(sandbox.networkAllowlist, []);
      assert.equal(sandbox.networkDenylist, null);
    });

    it('still gives a default route to a sandbox created without a list (the control)', async () => {
      const { sandbox, interfaces, routes } = await networkOf({});
      assert.ok(interfaces.length > 1, interfaces.join(' '));
      assert.ok(routes.some((line) => line.split(/\s+/)[1] === '00000000'), routes.join('\n'));
      assert.equal(sandbox.networkAccess, true);
      assert.equal(sandbox.networkAllowlist, null);
    });
  });
}

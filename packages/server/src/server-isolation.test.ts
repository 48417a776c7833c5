import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultDataDir } from './config.js';
import { runToEnd } from './runtime/conformance/conformance-suite.js';
import { ensureAgentBinary } from './runtime/native-build.js';
import { DEFAULT_USERNS_MAPPING, kernelCannotMapUsers } from './runtime/oci/userns.js';
import { specFixture } from './testing/sandbox-fixture.js';
import { ociMissing } from './testing/runtime-available.js';
import { startTestServer } from './testing/test-server.js';
import type { TestServer } from './testing/test-server.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const RUNTIME = process.env.CORRAL_OCI_RUNTIME ?? 'crun';

function mode(path: string): string {
  return (statSync(path).mode & 0o777).toString(8).padStart(4, '0');
}

describe('server: data directory and secret file modes', () => {
  it('makes the data dir 0700 before writing, and corral.db (-wal, -shm) and the gateway key 0600', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'corral-modes-'));
    const dataDir = join(parent, 'data');
    const old = process.umask(0o022);
    let t: TestServer | undefined;
    try {
      t = await startTestServer({ dataDir });
      assert.equal(mode(dataDir), '0700');
      assert.equal((await t.request('POST', '/api/v1/keys', { body: { name: 'x' } })).statusCode, 201); // something lands in the WAL
      for (const file of ['corral.db', 'corral.db-wal', 'corral.db-shm', 'gateway-secret']) assert.equal(mode(join(dataDir, file)), '0600', file);
    } finally {
      process.umask(old);
      await t?.close();
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it('tightens an existing data dir and files to 0700 / 0600', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'corral-modes-'));
    try {
      const first = await startTestServer({ dataDir });
      await first.close();
      const { chmodSync } = await import('node:fs');
      chmodSync(dataDir, 0o755);
      chmodSync(join(dataDir, 'corral.db'), 0o644);
      chmodSync(join(dataDir, 'gateway-secret'), 0o644);
      const second = await startTestServer({ dataDir });
      try {
        assert.equal(mode(dataDir), '0700');
        assert.equal(mode(join(dataDir, 'corral.db')), '0600');
        assert.equal(mode(join(dataDir, 'gateway-secret')), '0600');
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('the default data dir is /var/lib/corral for root, else the XDG data home', () => {
    assert.equal(defaultDataDir({}, 0), '/var/lib/corral');
    assert.equal(defaultDataDir({ XDG_DATA_HOME: '/x/data' }, 1000), '/x/data/corral');
    assert.equal(defaultDataDir({}, 1000), join(homedir(), '.local', 'share', 'corral'));
  });

  it('/healthz reports no isolation for the none runtime', async () => {
    const t = await startTestServer();
    try {
      const health = await t.request('GET', '/healthz', { key: null });
      assert.equal(health.statusCode, 200);
      assert.deepEqual(health.json(), { status: 'ok', isolation: null });
    } finally {
      await t.close();
    }
  });
});

const reason = ociMissing({ runtime: RUNTIME, registryImage: IMAGE });
describe('server: oci sandboxes from a 0700 data directory', { skip: reason }, () => {
  // mktemp -d: mode 0700, the layout that used to turn the user namespace off.
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-0700-'));
  let t: TestServer;
  let kernelReason: string | undefined;

  before(async () => {
    kernelReason = await kernelCannotMapUsers(DEFAULT_USERNS_MAPPING, join(CACHE, 'userns-test'), await ensureAgentBinary(join(CACHE, 'native-test')));
    t = await startTestServer({
      dataDir,
      runtime: 'oci',
      ociRuntime: RUNTIME,
      ociUserns: 'auto',
      ociPoolSize: 0,
      instanceId: `iso-${randomBytes(4).toString('hex')}`,
    });
  });

  after(async () => {
    const runtime = t?.server.runtime;
    if (runtime) for (const s of await runtime.list()) await runtime.remove(s.runtimeId);
    await t?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('the data dir stays 0700 and a sandbox still gets a user namespace (auto)', async (t2) => {
    assert.equal(mode(dataDir), '0700');
    const runtime = t.server.runtime;
    assert.ok(runtime);
    if (kernelReason !== undefined) {
      assert.equal(runtime.isolation().userNamespace, false);
      assert.equal(runtime.isolation().reason, kernelReason);
      t2.skip(`the kernel cannot: ${kernelReason}`);
      return;
    }
    assert.equal(runtime.isolation().userNamespace, true, runtime.isolation().reason);
    const { runtimeId } = await runtime.create(
      specFixture({ sandboxId: `iso${randomBytes(5).toString('hex')}`, image: IMAGE, memoryBytes: 128 * 1024 * 1024, diskBytes: 256 * 1024 * 1024, pidsLimit: 64, networkAccess: false }),
    );
    const uidMap = await runToEnd(runtime, runtimeId, 'cat /proc/self/uid_map');
    assert.equal(uidMap.exitCode, 0, uidMap.stderr);
    assert.deepEqual(uidMap.stdout.trim().split(/\s+/).map(Number), [0, DEFAULT_USERNS_MAPPING.hostUid, DEFAULT_USERNS_MAPPING.size]);
    assert.equal(mode(dataDir), '0700', 'nothing loosened the data dir');
    await runtime.remove(runtimeId);
  });

  it('/healthz carries the isolation object', async () => {
    const health = await t.request('GET', '/healthz', { key: null });
    assert.equal(health.statusCode, 200);
    const body = health.json<{ status: string; isolation: Record<string, unknown> }>();
    assert.equal(body.status, 'ok');
    assert.deepEqual(body.isolation, { ...t.server.runtime?.isolation() });
    assert.equal(body.isolation.seccomp, true);
    assert.equal(body.isolation.cgroupNamespace, true);
    assert.ok(body.isolation.cgroupVersion === 1 || body.isolation.cgroupVersion === 2);
  });

  it('image layer directories are not readable by other host users', () => {
    const layers = join(dataDir, 'oci', 'images', 'layers');
    assert.equal(statSync(layers).mode & 0o077, 0, `${layers} is ${mode(layers)}`);
  });
});

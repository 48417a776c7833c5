import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runToEnd } from '../conformance/conformance-suite.js';
import type { SandboxSpec } from '../runtime.js';
import { ImageStore } from '../oci-images/image-store.js';
import { OciRuntime } from './oci-runtime.js';
import { ociMissing } from '../../testing/runtime-available.js';
import { insecureRegistriesFor } from '../../testing/local-registries.js';
import { specFixture } from '../../testing/sandbox-fixture.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const STATE_DIR = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'oci-test');
const RUNTIME = process.env.CORRAL_OCI_RUNTIME ?? 'runc';
const MiB = 1024 * 1024;

function spec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return specFixture({
    sandboxId: `wm${randomBytes(5).toString('hex')}`,
    image: IMAGE,
    memoryBytes: 128 * MiB,
    diskBytes: 256 * MiB,
    pidsLimit: 64,
    ...overrides,
  });
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sandbox directories of warm (unclaimed or claimed) sandboxes of an instance. */
function warmDirs(instance: string): string[] {
  return readdirSync(join(STATE_DIR, 'instances', instance, 'sandboxes')).filter((n) => n.startsWith('corral-warm-'));
}

const reason = ociMissing({ runtime: RUNTIME, registryImage: IMAGE });
describe('oci runtime: warm sandboxes', { skip: reason }, () => {
  const images = new ImageStore({ root: join(STATE_DIR, 'images'), insecureRegistries: insecureRegistriesFor(IMAGE) });
  const instances: string[] = [];
  const make = (instance: string, warmPoolMax = 2): OciRuntime => {
    if (!instances.includes(instance)) instances.push(instance);
    return new OciRuntime({ instance, stateDir: STATE_DIR, images, runtimeBinary: RUNTIME, poolSize: 1, warmDiskSizes: [], warmPoolMax });
  };

  after(async () => {
    for (const instance of instances) {
      const rt = make(instance, 0);
      await rt.init();
      for (const s of await rt.list()) await rt.remove(s.runtimeId);
      await rt.close();
      await rm(join(STATE_DIR, 'instances', instance), { recursive: true, force: true });
    }
  });

  it('a claimed sandbox has its own limits, env, hostname, /etc files, id mapping and policy, and nothing from the pool filling or an earlier tenant', async () => {
    const rt = make(`warm-${randomBytes(4).toString('hex')}`);
    await rt.init();
    try {
      // An earlier tenant's create makes the image's template popular; a warm sandbox is started for it.
      const first = await rt.create(spec({ env: { EARLIER_SECRET: 'earlier' }, networkAccess: true }));
      assert.equal(first.runtimeId.startsWith('corral-wm'), true, 'the first create takes the normal path');
      await runToEnd(rt, first.runtimeId, 'echo earlier > /sandbox-workspace/left; echo earlier > /tmp/left');
      await until('a warm sandbox', () => rt.warmReady() >= 1);
      const fresh = (await runToEnd(rt, first.runtimeId, 'cat /proc/self/uid_map; id -u')).stdout;

      const mine = spec({ env: { TENANT_SECRET: 'mine' }, cpuCores: 0.5, memoryBytes: 200 * MiB, pidsLimit: 50, networkAccess: true, egress: { allowlist: ['example.com'], denylist: null } });
      const { runtimeId } = await rt.create(mine);
      assert.match(runtimeId, /^corral-warm-/, 'the create claimed a warm sandbox');
      const listed = await rt.list();
      assert.deepEqual(listed.map((s) => s.sandboxId).sort(), [first.runtimeId.slice('corral-'.length), mine.sandboxId].sort(), 'list() shows the claimed one by its sandbox id, no unclaimed warm one');
      const run = async (script: string): Promise<string> => {
        const r = await runToEnd(rt, runtimeId, script);
        assert.equal(r.exitCode, 0, `${script}: ${r.stderr}`);
        return r.stdout;
      };
      const hostname = `sandbox-${mine.sandboxId}`;
      assert.equal(await run('hostname; cat /etc/hostname; cat /proc/sys/kernel/hostname'), `${hostname}\n${hostname}\n${hostname}\n`);
      assert.match(await run('cat /etc/hosts'), new RegExp(`\\s${hostname}\\n`));
      assert.doesNotMatch(await run('cat /etc/hosts /etc/hostname'), /warm/);
      assert.equal(await run('cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'), `${200 * MiB}\n`);
      assert.match(await run('cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max'), /^50000\b/);
      assert.equal(await run('cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max'), '50\n');
      assert.equal((await rt.stats(runtimeId)).memoryLimitBytes, 200 * MiB);
      const env = await run('env');
      assert.match(env, /^TENANT_SECRET=mine$/m);
      assert.doesNotMatch(env, /EARLIER_SECRET/);
      // PID 1 (the agent) and the idle loop were started before the claim: they hold the image's env only, never a tenant's.
      assert.doesNotMatch(await run('cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n"'), /EARLIER_SECRET/);
      assert.equal(await run('cat /proc/self/uid_map; id -u'), fresh, 'the same id mapping as a fresh sandbox');
      assert.equal(await run('ls -A /sandbox-workspace /tmp'), '/sandbox-workspace:\n\n/tmp:\n');
      // PID 1 and its children other than this exec: the agent and the idle loop, as in a fresh sandbox.
      const processes = 'cat /proc/1/comm; for c in $(cat /proc/1/task/1/children); do [ "$c" = "$$" ] || cat /proc/$c/comm; done';
      assert.equal(await run(processes), (await runToEnd(rt, first.runtimeId, processes)).stdout, 'the same processes as a fresh sandbox');
      // The tenant's egress policy is in force: example.com resolves, other names do not.
      assert.notEqual((await runToEnd(rt, runtimeId, 'nslookup corral-not-allowed.example.org')).exitCode, 0);
      assert.deepEqual((await rt.egressLog(runtimeId, 100)).filter((e) => !/corral-not-allowed/.test(JSON.stringify(e))), [], 'nothing logged from the pool filling');

      // A second create of the same sandbox id fails, although the claimed one runs under another runtime id.
      await assert.rejects(rt.create({ ...mine }), /already exists/);
    } finally {
      for (const s of await rt.list()) await rt.remove(s.runtimeId);
      await rt.close();
    }
  });

  it('a claimed offline sandbox has no network; removal and close() leave no warm sandbox; a restart removes warm sandboxes left behind', async () => {
    const instance = `warm-${randomBytes(4).toString('hex')}`;
    const rt = make(instance);
    await rt.init();
    await rt.create(spec());
    await until('a warm sandbox', () => rt.warmReady() >= 1);
    const { runtimeId } = await rt.create(spec());
    assert.match(runtimeId, /^corral-warm-/);
    assert.equal((await runToEnd(rt, runtimeId, 'ls /sys/class/net')).stdout, 'lo\n');
    await until('a warm sandbox again', () => rt.warmReady() >= 1);
    for (const s of await rt.list()) await rt.remove(s.runtimeId);
    assert.equal(warmDirs(instance).length, rt.warmReady(), 'the removed claimed sandbox is gone');
    await rt.close();
    assert.deepEqual(warmDirs(instance), [], 'close() removes the warm sandboxes');

    // A process that died without close(): its warm sandboxes are on disk, recorded as warm.
    const crashed = make(instance);
    await crashed.init();
    await crashed.create(spec());
    await until('a warm sandbox', () => crashed.warmReady() >= 1);
    const left = warmDirs(instance);
    assert.equal(left.length >= 1, true);
    const state = JSON.parse(await readFile(join(STATE_DIR, 'instances', instance, 'sandboxes', left[0] ?? '', 'state.json'), 'utf8')) as { warm?: boolean };
    assert.equal(state.warm, true);
    const next = make(instance, 0);
    await next.init();
    assert.deepEqual(warmDirs(instance), [], 'init() removed the warm sandboxes of the earlier process instead of adopting them');
    assert.equal((await next.list()).length, 1);
    for (const s of await next.list()) await next.remove(s.runtimeId);
    await next.close();
    // The "crashed" process's own handles (its egress resolver); its warm sandboxes are gone already.
    await crashed.close();
  });
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runToEnd } from '../conformance/conformance-suite.js';
import type { RuntimeExitEvent, SandboxSpec } from '../runtime.js';
import { ImageStore } from '../oci-images/image-store.js';
import { OciRuntime } from './oci-runtime.js';
import { ociMissing } from '../../testing/runtime-available.js';
import { insecureRegistriesFor } from '../../testing/local-registries.js';
import { specFixture } from '../../testing/sandbox-fixture.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const STATE_DIR = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'oci-test');
const RUNTIME = process.env.CORRAL_OCI_RUNTIME ?? 'runc';

function missing(): string | undefined {
  return ociMissing({ runtime: RUNTIME, registryImage: IMAGE });
}

function spec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return specFixture({
    sandboxId: `rt${randomBytes(5).toString('hex')}`,
    image: IMAGE,
    memoryBytes: 128 * 1024 * 1024,
    diskBytes: 256 * 1024 * 1024,
    pidsLimit: 64,
    ...overrides,
  });
}

const reason = missing();
describe('oci runtime: restart and leftovers', { skip: reason }, () => {
  const instance = `restart-${randomBytes(4).toString('hex')}`;
  const images = new ImageStore({ root: join(STATE_DIR, 'images'), insecureRegistries: insecureRegistriesFor(IMAGE) });
  /** Every driver a case made: a case that fails before its own close() must not leave one open (its timers and sockets kept the test file from ever exiting). */
  const made: OciRuntime[] = [];
  const make = (): OciRuntime => {
    const rt = new OciRuntime({ instance, stateDir: STATE_DIR, images, runtimeBinary: RUNTIME, poolSize: 1, warmDiskSizes: [] });
    made.push(rt);
    return rt;
  };
  const instanceDir = join(STATE_DIR, 'instances', instance);

  after(async () => {
    for (const open of made) await open.close().catch(() => undefined);
    const rt = make();
    await rt.init();
    for (const s of await rt.list()) await rt.remove(s.runtimeId);
    await rt.close();
    await rm(instanceDir, { recursive: true, force: true });
  });

  it('a new driver process adopts running and exited sandboxes, reports later exits, and removes them', async () => {
    const first = make();
    await first.init();
    const keep = await first.create(spec());
    await runToEnd(first, keep.runtimeId, 'echo kept > /sandbox-workspace/f');
    // Long enough to still be running when the second driver starts, even on a loaded machine.
    const exiting = await first.create(spec({ startCommand: 'sleep 4; exit 9' }));
    const exited = await first.create(spec({ startCommand: 'sleep 0.2; exit 4' }));
    await new Promise((r) => setTimeout(r, 600)); // `exited` finishes while the first driver runs
    await first.close(); // the "server" stops; sandboxes keep running

    const second = make();
    const events: RuntimeExitEvent[] = [];
    second.onEvent((e) => {
      if (e.type === 'exited') events.push(e);
    });
    await second.init();
    const states = await second.list();
    assert.equal(states.find((s) => s.runtimeId === keep.runtimeId)?.running, true);
    assert.equal(states.find((s) => s.runtimeId === exited.runtimeId)?.exitCode, 4);
    assert.equal((await runToEnd(second, keep.runtimeId, 'cat /sandbox-workspace/f')).stdout, 'kept\n');
    for (let i = 0; i < 150 && !events.some((e) => e.runtimeId === exiting.runtimeId); i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      events.find((e) => e.runtimeId === exiting.runtimeId),
      { type: 'exited', sandboxId: exiting.runtimeId.replace(/^corral-/, ''), runtimeId: exiting.runtimeId, exitCode: 9, oomKilled: false },
    );
    for (const s of states) await second.remove(s.runtimeId);
    assert.deepEqual(await second.list(), []);
    await second.close();
  });

  it('init() removes what belongs to no recorded sandbox: half-created sandbox dirs, disks, namespaces', async () => {
    const rt = make();
    await rt.init();
    const { runtimeId } = await rt.create(spec());
    await rt.close();
    // Fake leftovers of a crashed create: a sandbox dir without state, an unowned disk dir, a namespace.
    await mkdir(join(instanceDir, 'sandboxes', 'corral-halfmade', 'rootfs'), { recursive: true });
    await mkdir(join(instanceDir, 'disks', 'deadbeef0000', 'mnt'), { recursive: true });
    await writeFile(join(instanceDir, 'disks', 'deadbeef0000', 'disk.img'), '');
    const prefix = `co-${createHash('sha256').update(instance).digest('hex').slice(0, 8)}-`;
    assert.ok(readdirSync('/run/netns').some((n) => n.startsWith(prefix)), 'the sandbox has a namespace');
    const stray = `${prefix}stray000`;
    execFileSync('ip', ['netns', 'add', stray]);
    const again = make();
    await again.init();
    assert.ok(!existsSync(join(instanceDir, 'sandboxes', 'corral-halfmade')));
    assert.ok(!existsSync(join(instanceDir, 'disks', 'deadbeef0000')));
    assert.ok(!existsSync(join('/run/netns', stray)));
    assert.equal((await again.inspect(runtimeId))?.running, true);
    // The layers of a running sandbox survive gc even when no image record names them.
    const layers = (await again.images.get(IMAGE))?.layers ?? [];
    assert.ok(layers.length > 0);
    const scratch = new OciRuntime({ instance: `${instance}-gc`, stateDir: STATE_DIR, images: new ImageStore({ root: join(STATE_DIR, 'gc-images'), insecureRegistries: insecureRegistriesFor(IMAGE) }) });
    // Another instance's sandbox whose state.json is being written (CI once read it empty): gc goes on.
    const writing = join(STATE_DIR, 'instances', `${instance}-writer`, 'sandboxes', 'corral-writing');
    await mkdir(writing, { recursive: true });
    await writeFile(join(writing, 'state.json'), '');
    assert.deepEqual(await scratch.gcImages(), []);
    await rm(join(STATE_DIR, 'instances', `${instance}-writer`), { recursive: true, force: true });
    await again.images.remove(IMAGE);
    const removed = await again.gcImages();
    for (const layer of layers) {
      assert.ok(!removed.includes(layer));
      assert.ok(existsSync(again.images.layerDir(layer)));
    }
    await again.images.ensure(IMAGE); // put the record back for other tests
    await rm(join(STATE_DIR, 'gc-images'), { recursive: true, force: true });
    await again.remove(runtimeId);
    await again.close();
  });

  it('deletes unused layers periodically, sparing ones unpacked too recently to have an image record yet', async () => {
    const root = join(STATE_DIR, `gc-timer-${randomBytes(3).toString('hex')}`);
    const old = join(root, 'layers', 'a'.repeat(64));
    const young = join(root, 'layers', 'b'.repeat(64));
    await mkdir(old, { recursive: true });
    const rt = new OciRuntime({
      instance: `${instance}-gct`,
      stateDir: STATE_DIR,
      images: new ImageStore({ root, insecureRegistries: insecureRegistriesFor(IMAGE) }),
      runtimeBinary: RUNTIME,
      poolSize: 0,
      warmDiskSizes: [],
      imageGcIntervalMs: 50,
      imageGcMinAgeMs: 600,
    });
    try {
      await rt.init();
      for (let i = 0; i < 100 && existsSync(old); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(!existsSync(old), 'an unused layer older than the minimum age is deleted');
      await mkdir(young);
      await new Promise((r) => setTimeout(r, 300)); // six collections
      assert.ok(existsSync(young), 'a layer unpacked moments ago is kept');
    } finally {
      await rt.close();
      await rm(root, { recursive: true, force: true });
      await rm(join(STATE_DIR, 'instances', `${instance}-gct`), { recursive: true, force: true });
    }
  });
});

/** A driver of its own for one describe block, without pools; its sandboxes and state go in `after`. */
function isolatedRuntime(prefix: string, options: { startCheckMs?: number } = {}): OciRuntime {
  const instance = `${prefix}-${randomBytes(4).toString('hex')}`;
  const images = new ImageStore({ root: join(STATE_DIR, 'images'), insecureRegistries: insecureRegistriesFor(IMAGE) });
  const rt = new OciRuntime({ instance, stateDir: STATE_DIR, images, runtimeBinary: RUNTIME, poolSize: 0, warmDiskSizes: [], ...options });
  after(async () => {
    for (const s of await rt.list()) await rt.remove(s.runtimeId);
    await rt.close();
    await rm(join(STATE_DIR, 'instances', instance), { recursive: true, force: true });
  });
  return rt;
}

describe('oci runtime: the start check', { skip: reason }, () => {
  // A start check long enough that waiting it out is unmistakable next to a create's own time.
  const rt = isolatedRuntime('startcheck', { startCheckMs: 3000 });

  it("an idle start command (the Prime SDK's `tail -f /dev/null`) is ready once it idles, without the whole check", async () => {
    await rt.init();
    for (const startCommand of ['tail -f /dev/null', 'sleep infinity']) {
      const started = Date.now();
      const { runtimeId } = await rt.create(spec({ networkAccess: false, startCommand }));
      const took = Date.now() - started;
      assert.ok(took < 2500, `${startCommand}: create took ${took} ms, the 3 s check was waited out`);
      assert.equal((await runToEnd(rt, runtimeId, 'echo ok')).stdout, 'ok\n');
      await rt.remove(runtimeId);
    }
  });

  it('a start command that fails at once still fails the create, idle-looking or not', async () => {
    await rt.init();
    for (const startCommand of ['exit 3', 'tail -f /no/such/file', 'sleep forever-and-ever']) {
      await assert.rejects(rt.create(spec({ networkAccess: false, startCommand })), /before it was ready/, startCommand);
    }
  });
});

describe('oci runtime: the agent (PID 1) and its exec sessions', { skip: reason }, () => {
  const rt = isolatedRuntime('agent');

  it('processes in the sandbox cannot reach the agent: no socket path, no /proc/1 descriptors', async () => {
    await rt.init();
    const { runtimeId } = await rt.create(spec({ networkAccess: false }));
    const r = await runToEnd(
      rt,
      runtimeId,
      'cat /proc/1/cmdline | tr "\\0" " "; echo; readlink /proc/1/fd/3 >/dev/null 2>&1; echo fd=$?; cat /proc/1/environ >/dev/null 2>&1; echo env=$?; ls -a /dev | grep -c corral || true',
    );
    assert.equal(r.exitCode, 0, r.stderr);
    const [cmdline, fd, env, sockets] = r.stdout.trim().split('\n');
    assert.match(cmdline ?? '', /^\/dev\/init init /);
    assert.equal(fd, 'fd=1', 'following PID 1 descriptors is refused');
    assert.equal(env, 'env=1', 'reading PID 1 environment is refused');
    assert.equal(sockets, '0');
  });

  it('a missing program is 127 and a missing directory 126, with the reason on stderr', async () => {
    const [state] = await rt.list();
    assert.ok(state);
    const missing = await runToEnd(rt, state.runtimeId, { argv: ['no-such-program'] });
    assert.equal(missing.exitCode, 127);
    assert.match(missing.stderr, /cannot run no-such-program: No such file or directory/);
    const cwd = await runToEnd(rt, state.runtimeId, { argv: ['true'], cwd: '/no/such/dir' });
    assert.equal(cwd.exitCode, 126);
    assert.match(cwd.stderr, /cannot enter \/no\/such\/dir/);
  });
});

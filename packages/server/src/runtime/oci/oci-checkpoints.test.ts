import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runToEnd } from '../conformance/conformance-suite.js';
import { RuntimeError } from '../runtime.js';
import type { SandboxSpec } from '../runtime.js';
import { ImageStore } from '../oci-images/image-store.js';
import { OciRuntime } from './oci-runtime.js';
import { CheckpointStore } from './checkpoint-store.js';
import { ociMissing } from '../../testing/runtime-available.js';
import { insecureRegistriesFor } from '../../testing/local-registries.js';
import { specFixture } from '../../testing/sandbox-fixture.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const STATE_DIR = join(CACHE, 'oci-test');
const RUNTIME = process.env.CORRAL_OCI_RUNTIME ?? 'runc';

function spec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return specFixture({ sandboxId: `ck${randomBytes(5).toString('hex')}`, image: IMAGE, memoryBytes: 128 * 1024 * 1024, diskBytes: 256 * 1024 * 1024, pidsLimit: 64, ...overrides });
}

async function sh(runtime: OciRuntime, runtimeId: string, script: string): Promise<string> {
  const result = await runToEnd(runtime, runtimeId, script);
  assert.equal(result.exitCode, 0, `${script}: ${result.stderr}`);
  return result.stdout;
}

const reason = ociMissing({ runtime: RUNTIME, registryImage: IMAGE });
describe('oci checkpoints: durability, GC, paused sandboxes, the warm pool', { skip: reason, timeout: 300_000 }, () => {
  const instance = `ckpt-${randomBytes(4).toString('hex')}`;
  const made: OciRuntime[] = [];
  let imagesRoot: string | undefined;
  const refs: string[] = [];
  const newRef = (): string => {
    const ref = `ck${randomBytes(6).toString('hex')}`;
    refs.push(ref);
    return ref;
  };
  const make = (images: ImageStore, extra: { warmPoolMax?: number } = {}): OciRuntime => {
    const rt = new OciRuntime({ instance, stateDir: STATE_DIR, images, runtimeBinary: RUNTIME, poolSize: 1, warmDiskSizes: [], imageGcIntervalMs: 0, imageGcMinAgeMs: 0, ...extra });
    made.push(rt);
    return rt;
  };

  after(async () => {
    // Manifests live in the shared state directory: a case that failed part-way must not leave its own behind.
    const store = new CheckpointStore(join(STATE_DIR, 'checkpoints'));
    for (const ref of refs) await store.delete(ref);
    for (const rt of made) {
      for (const s of await rt.list().catch(() => [])) await rt.remove(s.runtimeId).catch(() => undefined);
      await rt.close().catch(() => undefined);
    }
    await rm(join(STATE_DIR, 'instances', instance), { recursive: true, force: true });
    if (imagesRoot) await rm(imagesRoot, { recursive: true, force: true });
  });

  it('a checkpoint survives a driver restart; GC keeps its layers until it and its restores are gone; a paused sandbox stays paused; restores never take a warm sandbox', async () => {
    // A private image store: this case runs the GC with no minimum age, which must not touch the shared store.
    imagesRoot = await mkdtemp(join(CACHE, 'oci-ckpt-images-'));
    const images = new ImageStore({ root: imagesRoot, insecureRegistries: insecureRegistriesFor(IMAGE) });
    const first = make(images, { warmPoolMax: 2 });
    await first.init();
    const source = (await first.create(spec())).runtimeId;
    // A token of this run: layers are content-addressed and reproducible, so a run's checkpoint must not
    // share its layer with a manifest another run (one that failed part-way) left in the shared directory.
    await sh(first, source, `echo kept > /sandbox-workspace/kept; echo ${randomBytes(8).toString('hex')} > /sandbox-workspace/run; rm /bin/arch`);

    // A paused sandbox is captured without being thawed.
    await first.pause(source);
    let frozen = 0;
    const ref = newRef();
    const taken = await first.checkpoint(source, { checkpointId: ref, memory: false, onFrozen: () => frozen++ });
    assert.equal(frozen, 1);
    assert.equal((await first.inspect(source))?.paused, true, 'the paused sandbox is still paused after the checkpoint');
    await first.resume(source);
    // A pause and a resume that come during a capture are applied after its frozen pass: the sandbox ends as the last call said.
    await first.pause(source);
    const during = first.checkpoint(source, { checkpointId: newRef(), memory: false });
    await first.resume(source);
    // Same files as `taken`: the same reproducible layer. Deleted, so only `taken` holds that layer below.
    await first.deleteCheckpoint((await during).ref);
    assert.equal((await first.inspect(source))?.paused, false);
    assert.equal(await sh(first, source, 'echo thawed'), 'thawed\n', 'the resumed sandbox runs');
    // A removal during a capture waits for its frozen pass or makes it give up; either way nothing is left frozen.
    const doomed = (await first.create(spec())).runtimeId;
    const racingRef = newRef();
    const racing = first.checkpoint(doomed, { checkpointId: racingRef, memory: false }).then(() => 'stored', (e: unknown) => (e instanceof RuntimeError ? e.kind : String(e)));
    await first.remove(doomed);
    assert.match(await racing, /^(stored|CHECKPOINT_FAILED|NOT_FOUND)$/);
    await first.deleteCheckpoint(racingRef);
    assert.equal(await first.inspect(doomed), undefined);
    await assert.rejects(first.checkpoint(source, { checkpointId: ref, memory: false }), (e: unknown) => e instanceof RuntimeError && e.kind === 'CHECKPOINT_FAILED', 'a ref is used once');
    await assert.rejects(first.create(spec({ checkpoint: { ref, memory: true } })), (e: unknown) => e instanceof RuntimeError && e.kind === 'CHECKPOINT_FAILED', 'memory restores are refused');

    // A checkpoint on top of the sandbox's own previous one stores only what changed since, with whiteouts for what went.
    await sh(first, source, 'head -c 3000000 /dev/urandom > /sandbox-workspace/big; mkdir -p /opt/d/e; echo 1 > /opt/d/e/f; echo x > /opt/x; sleep 0.1');
    const base = await first.checkpoint(source, { checkpointId: newRef(), memory: false });
    await sh(first, source, 'rm -r /opt/d /sandbox-workspace/kept; echo y > /opt/x; echo new > /opt/new; mkdir /bin/arch; echo dir > /bin/arch/in');
    const next = await first.checkpoint(source, { checkpointId: newRef(), parentRef: base.ref, memory: false });
    assert.ok(base.sizeBytes > 3_000_000, `the base holds the 3 MB file (${base.sizeBytes} bytes)`);
    assert.ok(next.sizeBytes < 100_000, `the next checkpoint stores only the changes (${next.sizeBytes} bytes)`);
    const nextManifest = await first.checkpoints.store.get(next.ref);
    assert.deepEqual(nextManifest?.layers.slice(0, -1), (await first.checkpoints.store.get(base.ref))?.layers, 'it goes on top of the previous checkpoint');
    const incremental = (await first.create(spec({ checkpoint: { ref: next.ref, memory: false } }))).runtimeId;
    const state = 'test -e /opt/d && echo d-present || echo d-gone; test -e /sandbox-workspace/kept && echo kept || echo kept-gone; cat /opt/x /opt/new /bin/arch/in; wc -c < /sandbox-workspace/big';
    assert.equal(await sh(first, incremental, state), await sh(first, source, state), 'a restore of the incremental checkpoint sees the sandbox as it was');
    assert.equal(await sh(first, incremental, state), 'd-gone\nkept-gone\ny\nnew\ndir\n3000000\n');
    await first.remove(incremental);
    await first.deleteCheckpoint(base.ref);
    await first.deleteCheckpoint(next.ref);

    // Warm sandboxes of the image are ready; a restore must not take one.
    for (let i = 0; i < 300 && first.warmReady() === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(first.warmReady() > 0, 'the warm pool filled');
    const forkSpec = spec({ checkpoint: { ref: taken.ref, memory: false } });
    const fork = (await first.create(forkSpec)).runtimeId;
    assert.equal(await sh(first, fork, 'cat /sandbox-workspace/kept; test -e /bin/arch || echo gone'), 'kept\ngone\n', 'the restore has the checkpoint, not a warm sandbox of the bare image');
    // A claimed warm sandbox keeps its own runtime id; a cold start is named after the sandbox. (The
    // pool's ready count says nothing here: it keeps filling while the restore runs.)
    assert.equal(fork, `corral-${forkSpec.sandboxId}`, 'the restore took no warm sandbox');
    await first.remove(source);
    await first.close();

    // A new driver process on the same directories restores it, and its GC keeps the layers in use.
    const second = make(images);
    await second.init();
    const manifest = await second.checkpoints.store.get(taken.ref);
    assert.ok(manifest, 'the manifest is on disk');
    const own = manifest.layer;
    assert.deepEqual(await second.gcImages().then((removed) => removed.filter((l) => manifest.layers.includes(l))), [], 'GC keeps a stored checkpoint\'s layers');
    const again = (await second.create(spec({ checkpoint: { ref: taken.ref, memory: false } }))).runtimeId;
    assert.equal(await sh(second, again, 'cat /sandbox-workspace/kept'), 'kept\n');

    await second.deleteCheckpoint(taken.ref);
    assert.equal(await second.checkpoints.store.get(taken.ref), undefined);
    await second.gcImages();
    assert.ok(existsSync(images.layerDir(own)), 'GC keeps the layer while sandboxes restored from the deleted checkpoint run');
    // Another instance on the same directories (a replica) keeps it too: it reads every instance's sandbox records.
    const replica = new OciRuntime({ instance: `${instance}-replica`, stateDir: STATE_DIR, images, runtimeBinary: RUNTIME, poolSize: 0, warmDiskSizes: [], imageGcIntervalMs: 0, imageGcMinAgeMs: 0 });
    made.push(replica);
    await replica.init();
    await replica.gcImages();
    assert.ok(existsSync(images.layerDir(own)), 'a replica\'s GC keeps the layer of another instance\'s restores');
    assert.deepEqual(await second.pruneCheckpointLayers(), [], 'nothing in use is pruned');
    await replica.close();
    await rm(join(STATE_DIR, 'instances', `${instance}-replica`), { recursive: true, force: true });
    assert.equal(await sh(second, fork, 'cat /sandbox-workspace/kept'), 'kept\n', 'the adopted restore still reads its files');
    await second.remove(fork);
    await second.remove(again);
    assert.ok((await second.gcImages()).includes(own), 'GC removes the layer once nothing uses it');
  });
});

/**
 * Filesystem checkpoints of the docker driver against the real Docker Engine, in each disk mode
 * this engine allows (`storage-opt` only on a btrfs or zfs engine; `loop` needs root and loop
 * devices): files in and out of the workspace and a deleted image file are restored exactly into 8
 * sandboxes at once, later changes are not; a checkpoint of a restored sandbox adds one layer; a
 * new driver instance on the same data directory restores from a ref; a checkpoint deleted while a
 * restore runs leaves nothing behind once its sandboxes are gone.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { makeSpec, runToEnd } from '../conformance/conformance-suite.js';
import { ImageBuildError } from '../image-builder.js';
import { RuntimeError } from '../runtime.js';
import type { SandboxSpec } from '../runtime.js';
import { DockerCheckpoints } from './docker-checkpoints.js';
import { DockerRuntime } from './docker-runtime.js';
import type { DiskMode } from './docker-runtime.js';
import { LOCAL_TEST_REGISTRIES } from '../../testing/local-registries.js';
import { unavailableSuite } from '../../testing/runtime-available.js';

const IMAGE = process.env.CORRAL_TEST_IMAGE ?? 'corral-test/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const MiB = 1024 * 1024;
const WORKSPACE = '/sandbox-workspace';

/** Why the tests cannot run here, or undefined when dockerd and the test image are present. */
function missing(): string | undefined {
  try {
    execFileSync('docker', ['image', 'inspect', IMAGE], { stdio: 'ignore' });
    return undefined;
  } catch {
    return `no Docker engine with image ${IMAGE} (run scripts/ensure-docker.sh)`;
  }
}

/** The disk modes this host can run: storage-opt on a btrfs/zfs engine, loop as root with loop devices, none always. */
function reachableModes(): DiskMode[] {
  const modes: DiskMode[] = ['none'];
  const driver = execFileSync('docker', ['info', '--format', '{{.Driver}}'], { encoding: 'utf8' }).trim();
  if (driver === 'btrfs' || driver === 'zfs') modes.unshift('storage-opt');
  if (process.getuid?.() === 0 && existsSync('/dev/loop-control')) modes.unshift('loop');
  return modes;
}

/** What a sandbox holds of the files the tests write, one `name=value` per line. */
const PROBE = [
  `printf 'ws=%s\\n' "$(cat ${WORKSPACE}/data/a.txt 2>/dev/null || echo -)"`,
  `printf 'ws-mode=%s\\n' "$(stat -c %a ${WORKSPACE}/data/a.txt 2>/dev/null || echo -)"`,
  `printf 'ws-gone=%s\\n' "$(test -e ${WORKSPACE}/gone.txt && echo present || echo absent)"`,
  `printf 'ws-later=%s\\n' "$(test -e ${WORKSPACE}/later.txt && echo present || echo absent)"`,
  `printf 'out=%s\\n' "$(cat /opt/out/b.txt 2>/dev/null || echo -)"`,
  `printf 'out-later=%s\\n' "$(test -e /tmp/later.txt && echo present || echo absent)"`,
  `printf 'image-file=%s\\n' "$(test -e /etc/group && echo present || echo absent)"`,
].join('; ');

/** The probe's answer in a sandbox as checkpointed. */
const AT_CHECKPOINT = ['ws=workspace-1', 'ws-mode=640', 'ws-gone=absent', 'ws-later=absent', 'out=outside-1', 'out-later=absent', 'image-file=absent', ''].join('\n');

async function sh(runtime: DockerRuntime, runtimeId: string, script: string): Promise<string> {
  const { stdout, stderr, exitCode } = await runToEnd(runtime, runtimeId, script);
  assert.equal(exitCode, 0, `${script}: ${stderr}`);
  return stdout;
}

/** Every checkpoint image of `instance` in the engine (tagged or not). */
async function checkpointImages(docker: Docker, instance: string): Promise<Docker.ImageInfo[]> {
  return docker.listImages({ all: true, filters: { label: [`corral.checkpoint.instance=${instance}`] } });
}

const reason = missing();
if (reason !== undefined) {
  unavailableSuite('docker checkpoints', reason);
} else {
  for (const mode of reachableModes()) {
    describe(`docker checkpoints (${mode} disk mode)`, { concurrency: false }, () => {
      const docker = new Docker();
      const instance = `ckpt-${randomBytes(4).toString('hex')}`;
      const diskDir = join(CACHE, 'docker-disks', instance);
      const checkpointDir = join(CACHE, 'docker-checkpoints', instance);
      const options = { instance, diskDir, checkpointDir, diskMode: mode, warn: () => undefined, insecureRegistries: [...LOCAL_TEST_REGISTRIES] };
      let runtime: DockerRuntime;
      const spec = (overrides: Partial<SandboxSpec> = {}): SandboxSpec => makeSpec(IMAGE, { diskBytes: 128 * MiB, networkAccess: false, ...overrides });

      before(async () => {
        runtime = new DockerRuntime(options);
        await runtime.init();
      });

      after(async () => {
        for (const s of await runtime.list()) await runtime.remove(s.runtimeId);
        await runtime.close();
        // Children first: a parent goes once no image builds on it.
        for (let pass = 0; pass < 5; pass++) {
          const images = await docker.listImages({ filters: { label: [`corral.checkpoint.instance=${instance}`] } });
          if (images.length === 0) break;
          for (const image of images) await docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
        }
        // Disks of sandboxes whose container went without the driver (the crash case, if it failed before its own cleanup).
        for (const name of existsSync(diskDir) ? readdirSync(diskDir) : []) {
          try {
            execFileSync('umount', ['-l', join(diskDir, name, 'mnt')], { stdio: 'ignore' });
          } catch {
            // Not mounted.
          }
        }
        await rm(diskDir, { recursive: true, force: true });
        await rm(checkpointDir, { recursive: true, force: true });
        await rm(join(diskDir, '..', 'docker-etc', instance), { recursive: true, force: true });
      });

      it('restores the checkpointed files, workspace included, into 8 sandboxes at once, without later changes; a paused sandbox stays paused; memory checkpoints are refused', async () => {
        assert.equal(runtime.capabilities().checkpoint, true);
        assert.equal(runtime.capabilities().memoryCheckpoint, false);
        const { runtimeId } = await runtime.create(spec());
        await sh(
          runtime,
          runtimeId,
          `mkdir -p ${WORKSPACE}/data /opt/out && echo workspace-1 > ${WORKSPACE}/data/a.txt && chmod 640 ${WORKSPACE}/data/a.txt && ` +
            `echo doomed > ${WORKSPACE}/gone.txt && rm ${WORKSPACE}/gone.txt && echo outside-1 > /opt/out/b.txt && rm /etc/group`,
        );
        assert.equal(await sh(runtime, runtimeId, PROBE), AT_CHECKPOINT);

        const refused = await runtime.checkpoint(runtimeId, { checkpointId: 'mem', memory: true }).then(() => undefined, (e: unknown) => e);
        assert.ok(refused instanceof RuntimeError && refused.kind === 'CHECKPOINT_FAILED' && /oci driver/.test(refused.message), String(refused));

        let frozen = 0;
        const checkpoint = await runtime.checkpoint(runtimeId, { checkpointId: `c1-${randomBytes(3).toString('hex')}`, memory: false, onFrozen: () => frozen++ });
        assert.equal(frozen, 1, 'onFrozen fires once');
        assert.equal(checkpoint.memory, false);
        assert.ok(checkpoint.sizeBytes > 0, 'the checkpoint stores what the sandbox wrote');
        assert.equal((await runtime.inspect(runtimeId))?.paused, false, 'the sandbox runs again');

        // Later changes: none of them may reach a restored sandbox.
        await sh(runtime, runtimeId, `echo workspace-2 > ${WORKSPACE}/data/a.txt && touch ${WORKSPACE}/later.txt /tmp/later.txt && echo outside-2 > /opt/out/b.txt && echo x > /etc/group`);

        // The ref is no image a user can name, by its name or its id, nor build on.
        const imageId = (await docker.getImage(checkpoint.ref).inspect()).Id;
        for (const image of [checkpoint.ref, imageId]) {
          const named = await runtime.create(spec({ image })).then(() => undefined, (e: unknown) => e);
          assert.ok(named instanceof RuntimeError && named.kind === 'IMAGE_PULL_FAILED', `${image}: ${String(named)}`);
        }
        const contextDir = mkdtempSync(join(tmpdir(), 'corral-ckpt-build-'));
        writeFileSync(join(contextDir, 'Dockerfile'), `FROM ${checkpoint.ref}\nRUN true\n`);
        execFileSync('tar', ['-C', contextDir, '-cf', join(contextDir, 'context.tar'), 'Dockerfile']);
        const built = await runtime.imageBuilder
          .build({ contextTar: join(contextDir, 'context.tar'), dockerfilePath: 'Dockerfile', reference: `corral.local/${instance}/from-checkpoint:1`, cacheKey: instance, mayUseBase: async () => true, onOutput: () => undefined })
          .then(() => undefined, (e: unknown) => e);
        await rm(contextDir, { recursive: true, force: true });
        assert.ok(built instanceof ImageBuildError && /no such image/.test(built.message), String(built));

        const memoryRestore = await runtime.create(spec({ checkpoint: { ref: checkpoint.ref, memory: true } })).then(() => undefined, (e: unknown) => e);
        assert.ok(memoryRestore instanceof RuntimeError && memoryRestore.kind === 'CHECKPOINT_FAILED', String(memoryRestore));

        const forks = await Promise.all(Array.from({ length: 8 }, () => runtime.create(spec({ checkpoint: { ref: checkpoint.ref, memory: false } }))));
        for (const fork of forks) assert.equal(await sh(runtime, fork.runtimeId, PROBE), AT_CHECKPOINT, `fork ${fork.runtimeId}`);
        // Forks are independent of each other.
        const [first, second] = forks;
        assert.ok(first && second);
        await sh(runtime, first.runtimeId, `echo fork > ${WORKSPACE}/data/a.txt && echo fork > /opt/out/b.txt`);
        assert.equal(await sh(runtime, second.runtimeId, PROBE), AT_CHECKPOINT);

        // A paused sandbox is checkpointed and stays paused.
        await runtime.pause(runtimeId);
        const whilePaused = await runtime.checkpoint(runtimeId, { checkpointId: `c2-${randomBytes(3).toString('hex')}`, memory: false });
        assert.equal((await runtime.inspect(runtimeId))?.paused, true, 'a paused sandbox stays paused');
        await runtime.resume(runtimeId);
        const fromPaused = await runtime.create(spec({ checkpoint: { ref: whilePaused.ref, memory: false } }));
        assert.match(await sh(runtime, fromPaused.runtimeId, PROBE), /^ws=workspace-2\n[^]*ws-later=present\n[^]*out=outside-2\n/);

        for (const s of [runtimeId, fromPaused.runtimeId, ...forks.map((f) => f.runtimeId)]) await runtime.remove(s);
        await runtime.deleteCheckpoint(checkpoint.ref);
        await runtime.deleteCheckpoint(whilePaused.ref);
      });

      it('a checkpoint of a restored sandbox adds one layer on its parent; a new driver instance restores from the ref after a restart', async () => {
        const { runtimeId } = await runtime.create(spec());
        await sh(runtime, runtimeId, `echo gen-1 > ${WORKSPACE}/gen.txt && echo gen-1 > /opt-gen.txt`);
        const parent = await runtime.checkpoint(runtimeId, { checkpointId: `p-${randomBytes(3).toString('hex')}`, memory: false });
        const child = await runtime.create(spec({ checkpoint: { ref: parent.ref, memory: false } }));
        await sh(runtime, child.runtimeId, `echo gen-2 > ${WORKSPACE}/gen.txt && echo gen-2 > /opt-gen.txt`);
        const grandchild = await runtime.checkpoint(child.runtimeId, { checkpointId: `g-${randomBytes(3).toString('hex')}`, memory: false, parentRef: parent.ref });
        const layers = async (ref: string): Promise<string[]> => (await docker.getImage(ref).inspect()).RootFS.Layers ?? [];
        const parentLayers = await layers(parent.ref);
        const childLayers = await layers(grandchild.ref);
        assert.equal(childLayers.length, parentLayers.length + 1, 'one new layer');
        assert.deepEqual(childLayers.slice(0, parentLayers.length), parentLayers, 'on top of the parent checkpoint');

        // A restart: a new driver instance on the same engine and data directory.
        await runtime.close();
        runtime = new DockerRuntime(options);
        await runtime.init();
        const restored = await runtime.create(spec({ checkpoint: { ref: grandchild.ref, memory: false } }));
        assert.equal(await sh(runtime, restored.runtimeId, `cat ${WORKSPACE}/gen.txt /opt-gen.txt`), 'gen-2\ngen-2\n');
        const restoredParent = await runtime.create(spec({ checkpoint: { ref: parent.ref, memory: false } }));
        assert.equal(await sh(runtime, restoredParent.runtimeId, `cat ${WORKSPACE}/gen.txt /opt-gen.txt`), 'gen-1\ngen-1\n');

        // The parent deleted while its child checkpoint still builds on it: the child restores still.
        await runtime.deleteCheckpoint(parent.ref);
        await runtime.deleteCheckpoint(parent.ref);
        const afterDelete = await runtime.create(spec({ checkpoint: { ref: grandchild.ref, memory: false } }));
        assert.equal(await sh(runtime, afterDelete.runtimeId, `cat ${WORKSPACE}/gen.txt /opt-gen.txt`), 'gen-2\ngen-2\n');
        const gone = await runtime.create(spec({ checkpoint: { ref: parent.ref, memory: false } })).then(() => undefined, (e: unknown) => e);
        assert.ok(gone instanceof RuntimeError && gone.kind === 'CHECKPOINT_FAILED', String(gone));

        for (const s of [runtimeId, child.runtimeId, restored.runtimeId, restoredParent.runtimeId, afterDelete.runtimeId]) await runtime.remove(s);
        await runtime.deleteCheckpoint(grandchild.ref);
        assert.deepEqual(await checkpointImages(docker, instance), [], 'no checkpoint image is left');
        if (mode === 'loop') assert.deepEqual(readdirSync(checkpointDir).filter((n) => n.endsWith('.tar')), [], 'no workspace archive is left');
      });

      it('a checkpoint deleted while restores run: they work or fail cleanly, running sandboxes keep working, nothing is left once they are gone', async () => {
        const { runtimeId } = await runtime.create(spec());
        await sh(runtime, runtimeId, `echo kept > ${WORKSPACE}/k.txt && echo kept > /k.txt`);
        const checkpoint = await runtime.checkpoint(runtimeId, { checkpointId: `d-${randomBytes(3).toString('hex')}`, memory: false });
        const running = await runtime.create(spec({ checkpoint: { ref: checkpoint.ref, memory: false } }));
        const restores = Array.from({ length: 3 }, () => runtime.create(spec({ checkpoint: { ref: checkpoint.ref, memory: false } })).then((r) => r, (e: unknown) => e));
        await new Promise((resolve) => setTimeout(resolve, 50));
        await runtime.deleteCheckpoint(checkpoint.ref);
        const outcomes = await Promise.all(restores);
        const made: string[] = [];
        for (const outcome of outcomes) {
          if (outcome instanceof RuntimeError) {
            assert.equal(outcome.kind, 'CHECKPOINT_FAILED', outcome.message);
          } else {
            const { runtimeId: id } = outcome as { runtimeId: string };
            made.push(id);
            assert.equal(await sh(runtime, id, `cat ${WORKSPACE}/k.txt /k.txt`), 'kept\nkept\n');
          }
        }
        assert.equal(await sh(runtime, running.runtimeId, `cat ${WORKSPACE}/k.txt /k.txt`), 'kept\nkept\n', 'a sandbox restored before the delete keeps working');
        // Deterministically: a restore holding the checkpoint (between reading it and creating its container) keeps it through a delete.
        const again = await runtime.checkpoint(runtimeId, { checkpointId: `h-${randomBytes(3).toString('hex')}`, memory: false });
        const store = new DockerCheckpoints(docker, instance, checkpointDir);
        const held = await store.acquire(again.ref);
        await store.delete(again.ref);
        assert.ok(await docker.getImage(held.imageId).inspect().then(() => true, () => false), 'a held image stays through a delete');
        if (held.workspaceDigest !== undefined) assert.ok(existsSync(store.archives.path(held.workspaceDigest)), 'and so does its archive');
        await store.release(held);
        assert.equal(await docker.getImage(held.imageId).inspect().then(() => true, () => false), false, 'released, the deleted image goes');
        if (held.workspaceDigest !== undefined) assert.equal(existsSync(store.archives.path(held.workspaceDigest)), false, 'with its archive');
        const refused = await runtime.create(spec({ checkpoint: { ref: checkpoint.ref, memory: false } })).then(() => undefined, (e: unknown) => e);
        assert.ok(refused instanceof RuntimeError && refused.kind === 'CHECKPOINT_FAILED', String(refused));
        assert.equal((await checkpointImages(docker, instance)).length, 1, 'the image stays while sandboxes use it');
        for (const id of [runtimeId, running.runtimeId, ...made]) await runtime.remove(id);
        assert.deepEqual(await checkpointImages(docker, instance), [], 'the image goes with the last sandbox using it');
        if (mode === 'loop') assert.deepEqual(readdirSync(checkpointDir).filter((n) => n.endsWith('.tar')), [], 'no workspace archive is left');
      });

      it("keeps environment values out of the checkpoint image; sizeBytes counts what the checkpoint adds; a checkpoint of another disk mode is refused", async () => {
        const { runtimeId } = await runtime.create(spec({ env: { API_TOKEN: 'hunter2-secret' } }));
        await sh(runtime, runtimeId, `head -c ${4 * MiB} /dev/urandom > /big.bin && echo small > ${WORKSPACE}/s.txt`);
        const parent = await runtime.checkpoint(runtimeId, { checkpointId: `e-${randomBytes(3).toString('hex')}`, memory: false });
        const config = (await docker.getImage(parent.ref).inspect()).Config;
        assert.ok(!JSON.stringify(config).includes('hunter2'), 'no environment value is stored in the image');
        assert.ok(parent.sizeBytes >= 4 * MiB, `the checkpoint counts the 4 MiB written (${parent.sizeBytes})`);
        const fork = await runtime.create(spec({ checkpoint: { ref: parent.ref, memory: false } }));
        assert.equal(await sh(runtime, fork.runtimeId, 'printf "[%s]" "${API_TOKEN-unset}"'), '[]', 'a restored sandbox has only the environment it is given');
        await sh(runtime, fork.runtimeId, `echo more > /more.txt`);
        const child = await runtime.checkpoint(fork.runtimeId, { checkpointId: `f-${randomBytes(3).toString('hex')}`, memory: false, parentRef: parent.ref });
        assert.ok(child.sizeBytes < MiB, `a checkpoint on a checkpoint counts only what changed since (${child.sizeBytes})`);

        // The same deployment on a driver in another disk mode cannot restore it.
        const other = new DockerRuntime({ ...options, diskMode: mode === 'loop' ? 'none' : 'loop' });
        await other.init();
        try {
          const refused = await other.create(spec({ checkpoint: { ref: parent.ref, memory: false } })).then(() => undefined, (e: unknown) => e);
          assert.ok(refused instanceof RuntimeError && refused.kind === 'CHECKPOINT_FAILED', String(refused));
        } finally {
          await other.close();
        }
        for (const id of [runtimeId, fork.runtimeId]) await runtime.remove(id);
        await runtime.deleteCheckpoint(child.ref);
        await runtime.deleteCheckpoint(parent.ref);
        assert.deepEqual(await checkpointImages(docker, instance), []);
      });

      it('startup removes deleted checkpoints a crash left behind and stale workspace archives, and keeps every live checkpoint', async () => {
        const { runtimeId } = await runtime.create(spec());
        await sh(runtime, runtimeId, `echo live > ${WORKSPACE}/l.txt && echo live > /l.txt`);
        const live = await runtime.checkpoint(runtimeId, { checkpointId: `l-${randomBytes(3).toString('hex')}`, memory: false });
        await sh(runtime, runtimeId, `echo dead > ${WORKSPACE}/l.txt`);
        const dead = await runtime.checkpoint(runtimeId, { checkpointId: `x-${randomBytes(3).toString('hex')}`, memory: false });
        const user = await runtime.create(spec({ checkpoint: { ref: dead.ref, memory: false } }));
        await runtime.deleteCheckpoint(dead.ref);
        // The server "crashes": the sandbox's container goes without the driver (the reconciler's job after a restart).
        await docker.getContainer(user.runtimeId).remove({ force: true });
        assert.equal((await checkpointImages(docker, instance)).length, 2, 'the deleted checkpoint image is still there');
        // A restore that crashed left its hold on the live checkpoint.
        await docker.getImage(live.ref).tag({ repo: 'corral-checkpoint', tag: 'hold.1000.0123456789ab' });
        const stale = join(checkpointDir, `sha256-${'0'.repeat(64)}.tar`);
        if (mode === 'loop') {
          execFileSync('touch', ['-d', '2 hours ago', stale]);
        }
        await runtime.close();
        runtime = new DockerRuntime(options);
        await runtime.init();
        const left = await checkpointImages(docker, instance);
        assert.deepEqual(left.map((i) => i.RepoTags), [[live.ref]], 'only the live checkpoint stays');
        if (mode === 'loop') {
          assert.equal(existsSync(stale), false, 'a stale archive no checkpoint names is removed');
          assert.equal(readdirSync(checkpointDir).filter((n) => n.endsWith('.tar')).length, 1, "the live checkpoint's archive stays");
        }
        const restored = await runtime.create(spec({ checkpoint: { ref: live.ref, memory: false } }));
        assert.equal(await sh(runtime, restored.runtimeId, `cat ${WORKSPACE}/l.txt /l.txt`), 'live\nlive\n');
        for (const id of [runtimeId, restored.runtimeId, user.runtimeId]) await runtime.remove(id);
        await runtime.deleteCheckpoint(live.ref);
        assert.deepEqual(await checkpointImages(docker, instance), []);
      });
    });
  }
}

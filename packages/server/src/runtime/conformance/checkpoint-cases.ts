import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { RuntimeError, type SandboxRuntime } from '../runtime.js';
import { makeSpec, runToEnd, within } from './conformance-suite.js';
import type { ConformanceContext } from './conformance-suite.js';

const MiB = 1024 * 1024;
/** How many sandboxes are restored from one checkpoint at once. */
const FORKS = 8;

/** A checkpoint id no other run uses. */
function checkpointId(): string {
  return `ck${randomBytes(6).toString('hex')}`;
}

/** Runs `script` and asserts it succeeded; returns its stdout. */
async function sh(runtime: SandboxRuntime, runtimeId: string, script: string): Promise<string> {
  const result = await runToEnd(runtime, runtimeId, script);
  assert.equal(result.exitCode, 0, `\`${script}\` failed (${result.exitCode}): ${result.stderr}`);
  return result.stdout;
}

/**
 * What the checkpointed sandbox holds, printed one fact a line: files in the workspace and
 * elsewhere, a deleted image file, a directory of the image replaced by a new one, a hard link
 * pair, a symlink, a mode, and a file the background process kept writing.
 */
const STATE_SCRIPT = [
  'cat /sandbox-workspace/a.txt',
  'cat /opt/data/b.txt',
  'md5sum /opt/data/big | cut -d" " -f1',
  'test -e /bin/arch && echo arch-present || echo arch-deleted',
  'ls -A /usr/sbin | tr "\\n" " "; echo',
  'stat -c "%h %a %u:%g" /opt/data/h1',
  'stat -c "%u:%g" /opt/data/b.txt',
  'readlink /opt/data/link',
  'test -e /sandbox-workspace/later && echo later-present || echo later-absent',
  'test -s /tmp/bg && echo bg-written || echo bg-missing',
].join('; ');

/**
 * Filesystem checkpoints and restores (drivers with `capabilities().checkpoint`; skipped
 * elsewhere, where the methods must be absent — the API's refusal is tested with the API): a
 * restore sees exactly the checkpointed files (deleted ones stay deleted, a replaced directory
 * holds only its new content) and none of the changes made after the checkpoint, in 8 sandboxes
 * restored at once; a checkpoint of a restored sandbox stores only what changed since; deleting a
 * checkpoint leaves sandboxes restored from it working.
 */
export function registerCheckpointCases(context: ConformanceContext): void {
  it('checkpoint: restores in 8 sandboxes at once see the checkpointed files exactly, not later changes; a checkpoint of a restore stores only its changes; deleting a checkpoint keeps its restores working', { timeout: 600_000 }, async (t) => {
    const runtime = context.runtime;
    if (!runtime.capabilities().checkpoint) {
      assert.equal(runtime.checkpoint, undefined, `the ${runtime.name} driver has checkpoint() without the capability`);
      t.skip(`the ${runtime.name} driver has no filesystem checkpoints`);
      return;
    }
    assert.ok(runtime.checkpoint && runtime.deleteCheckpoint, 'a driver with the capability has checkpoint() and deleteCheckpoint()');
    const checkpoint = runtime.checkpoint.bind(runtime);
    const deleteCheckpoint = runtime.deleteCheckpoint.bind(runtime);
    const made: string[] = [];
    const refs: string[] = [];
    const create = async (overrides: Parameters<typeof makeSpec>[1] = {}): Promise<string> => {
      const { runtimeId } = await runtime.create(makeSpec(context.image, overrides));
      made.push(runtimeId);
      return runtimeId;
    };
    try {
      const source = await create();
      await sh(
        runtime,
        source,
        [
          'set -e',
          'echo checkpointed > /sandbox-workspace/a.txt',
          'mkdir -p /opt/data && echo elsewhere > /opt/data/b.txt',
          'head -c 4194304 /dev/urandom > /opt/data/big',
          'rm /bin/arch',
          'rm -rf /usr/sbin && mkdir /usr/sbin && echo new > /usr/sbin/only',
          'echo h > /opt/data/h1 && ln /opt/data/h1 /opt/data/h2 && chmod 741 /opt/data/h1 && chown 1234:2345 /opt/data/h1',
          'ln -s /sandbox-workspace/a.txt /opt/data/link',
          // A background process keeps writing while the checkpoint is taken.
          '(while :; do date > /tmp/bg.new; mv /tmp/bg.new /tmp/bg; done) >/dev/null 2>&1 &',
          'sleep 0.2',
        ].join('\n'),
      );
      const expected = await sh(runtime, source, STATE_SCRIPT);
      assert.match(expected, /^checkpointed\nelsewhere\n[0-9a-f]{32}\narch-deleted\nonly \n2 741 1234:2345\n0:0\n\/sandbox-workspace\/a\.txt\nlater-absent\nbg-written\n$/);

      let frozenReported = 0;
      const first = checkpointId();
      const taken = await within(180_000, 'checkpoint', checkpoint(source, { checkpointId: first, memory: false, onFrozen: () => frozenReported++ }));
      refs.push(taken.ref);
      assert.equal(frozenReported, 1, 'onFrozen is called once');
      assert.equal(taken.memory, false);
      assert.ok(taken.sizeBytes >= 4 * MiB, `the checkpoint holds the 4 MiB file: ${taken.sizeBytes} bytes`);
      assert.equal(await sh(runtime, source, 'echo running'), 'running\n', 'the sandbox runs on after the checkpoint');

      // Changes after the checkpoint are not part of it.
      await sh(runtime, source, 'echo later > /sandbox-workspace/a.txt; touch /sandbox-workspace/later; rm /opt/data/b.txt; echo back > /bin/arch');

      const forks = await within(300_000, `${FORKS} restores`, Promise.all(
        Array.from({ length: FORKS }, () => create({ checkpoint: { ref: taken.ref, memory: false } })),
      ));
      for (const fork of forks) {
        assert.equal(await sh(runtime, fork, STATE_SCRIPT), expected, `restored sandbox ${fork} sees the checkpointed files`);
        const hostname = (await sh(runtime, fork, 'cat /etc/hostname')).trim();
        assert.notEqual(hostname, (await sh(runtime, source, 'cat /etc/hostname')).trim(), 'a restore has its own /etc/hostname');
        assert.equal(await sh(runtime, fork, 'echo mine > /sandbox-workspace/own && cat /sandbox-workspace/own'), 'mine\n', 'a restore writes its workspace');
      }
      // Restores are independent of each other.
      const [one, two] = forks as [string, string];
      await sh(runtime, one, 'echo changed > /opt/data/b.txt');
      assert.equal(await sh(runtime, two, 'cat /opt/data/b.txt'), 'elsewhere\n', 'a write in one restore is not seen by another');

      // A checkpoint of a restored sandbox stores what changed since the restore only.
      await sh(runtime, one, 'echo second > /sandbox-workspace/second.txt');
      const second = await within(180_000, 'checkpoint of a restore', checkpoint(one, { checkpointId: checkpointId(), parentRef: taken.ref, memory: false }));
      refs.push(second.ref);
      assert.ok(second.sizeBytes < MiB, `a checkpoint of a restore with a few bytes changed stores ${second.sizeBytes} bytes (the first stored ${taken.sizeBytes})`);

      // Deleting the first checkpoint leaves its restores and the checkpoint built on it working.
      await deleteCheckpoint(taken.ref);
      await deleteCheckpoint(taken.ref);
      assert.equal(await sh(runtime, two, 'cat /sandbox-workspace/a.txt /opt/data/big | wc -c'), `${13 + 4 * MiB}\n`, 'a restore of a deleted checkpoint still reads its files');
      const grandchild = await create({ checkpoint: { ref: second.ref, memory: false } });
      assert.equal(await sh(runtime, grandchild, 'cat /sandbox-workspace/second.txt /opt/data/b.txt; test -e /bin/arch || echo arch-deleted'), 'second\nchanged\narch-deleted\n');

      // A deleted checkpoint cannot be restored; memory is refused where the driver cannot capture it.
      const gone = await runtime.create(makeSpec(context.image, { checkpoint: { ref: taken.ref, memory: false } })).then(
        (c) => {
          made.push(c.runtimeId);
          return undefined;
        },
        (e: unknown) => e,
      );
      assert.ok(gone instanceof RuntimeError, `restoring a deleted checkpoint fails with a RuntimeError, not ${String(gone)}`);
      if (!runtime.capabilities().memoryCheckpoint) {
        const refused = await checkpoint(source, { checkpointId: checkpointId(), memory: true }).then(() => undefined, (e: unknown) => e);
        assert.ok(refused instanceof RuntimeError && refused.kind === 'CHECKPOINT_FAILED', `a memory checkpoint is refused with CHECKPOINT_FAILED, not ${String(refused)}`);
      }
    } finally {
      await Promise.all(made.map((id) => runtime.remove(id).catch(() => undefined)));
      for (const ref of refs) await deleteCheckpoint(ref).catch(() => undefined);
    }
  });
}

/**
 * Memory checkpoints (drivers with `capabilities().memoryCheckpoint`; skipped elsewhere, where
 * the filesystem case above checks the refusal): a count kept only in a background shell's memory
 * goes on in 4 sandboxes restored from one memory checkpoint at once, each serving execs and
 * reading the checkpointed files; the source runs on.
 */
export function registerMemoryCheckpointCases(context: ConformanceContext): void {
  it('memory checkpoint: a background process restored in 4 sandboxes at once goes on from its captured state; the source runs on', { timeout: 300_000 }, async (t) => {
    const runtime = context.runtime;
    if (!runtime.capabilities().memoryCheckpoint || !runtime.checkpoint || !runtime.deleteCheckpoint) {
      t.skip(`the ${runtime.name} driver has no memory checkpoints here${runtime.capabilities().memoryCheckpointUnavailable ? `: ${runtime.capabilities().memoryCheckpointUnavailable}` : ''}`);
      return;
    }
    const made: string[] = [];
    const ref = checkpointId();
    const count = async (id: string): Promise<number> => Number((await sh(runtime, id, 'cat /tmp/count')).trim());
    const goesOn = async (id: string, from: number): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while ((await count(id)) <= from + 3) {
        assert.ok(Date.now() < deadline, `sandbox ${id} stopped counting at ${from}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      const { runtimeId: source } = await runtime.create(makeSpec(context.image));
      made.push(source);
      await sh(runtime, source, "echo kept > /sandbox-workspace/m.txt; sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done' >/dev/null 2>&1 &");
      await within(20_000, 'the counter to start', (async () => {
        while (!((await runToEnd(runtime, source, 'test -s /tmp/count')).exitCode === 0)) await new Promise((r) => setTimeout(r, 50));
      })());
      const taken = await runtime.checkpoint(source, { checkpointId: ref, memory: true });
      assert.equal(taken.memory, true);
      const atCapture = await count(source);
      await goesOn(source, atCapture);
      await sh(runtime, source, 'echo later > /sandbox-workspace/m.txt');

      const copies = await Promise.all(
        Array.from({ length: 4 }, async () => {
          const { runtimeId } = await runtime.create(makeSpec(context.image, { checkpoint: { ref: taken.ref, memory: true } }));
          made.push(runtimeId);
          return runtimeId;
        }),
      );
      for (const copy of copies) {
        const first = await count(copy);
        // A restarted counter would begin at 1; the restored one goes on from about the captured count.
        assert.ok(first >= atCapture - 20, `copy ${copy} counts from ${first}, the source was at ${atCapture} just after the capture`);
        await goesOn(copy, first);
        assert.equal(await sh(runtime, copy, 'cat /sandbox-workspace/m.txt'), 'kept\n');
      }
      await runtime.deleteCheckpoint(taken.ref);
    } finally {
      await Promise.all(made.map((id) => runtime.remove(id).catch(() => undefined)));
      await runtime.deleteCheckpoint?.(ref).catch(() => undefined);
    }
  });
}

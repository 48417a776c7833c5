import assert from 'node:assert/strict';
import { it } from 'node:test';
import { RuntimeError, type SandboxRuntime } from '../runtime.js';
import { makeSpec, runToEnd, within } from './conformance-suite.js';
import type { ConformanceContext } from './conformance-suite.js';

/** CPU time a frozen sandbox may still be charged between two reads (accounting of the moment it froze). */
const FROZEN_CPU_SLACK_NS = 20_000_000;

/** The counter file's `<pid> <count>`, read in the sandbox. */
async function readCounter(runtime: SandboxRuntime, runtimeId: string): Promise<{ pid: number; count: number }> {
  const { stdout } = await runToEnd(runtime, runtimeId, 'cat /tmp/counter 2>/dev/null || echo "0 0"');
  const [pid, count] = stdout.trim().split(/\s+/).map(Number);
  return { pid: pid ?? 0, count: count ?? 0 };
}

/** Waits until the counter has counted past `above` (returns what it read), polling for up to 60 s. */
async function counterPast(runtime: SandboxRuntime, runtimeId: string, above: number): Promise<{ pid: number; count: number }> {
  for (let i = 0; i < 600; i++) {
    const read = await readCounter(runtime, runtimeId);
    if (read.count > above) return read;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the counter never passed ${above}`);
}

/** Asserts that `call` fails, within 15 s, with `RuntimeError('PAUSED')`. */
async function assertRefusedPaused(what: string, call: () => Promise<unknown>): Promise<void> {
  const error = await within(15_000, `${what} on a paused sandbox`, call().then(() => undefined, (e: unknown) => e));
  assert.ok(error instanceof RuntimeError, `${what} fails with a RuntimeError, not ${String(error)}`);
  assert.equal(error.kind, 'PAUSED', `${what}: ${error.message}`);
}

/**
 * `SandboxRuntime.pause` / `resume` (drivers with `capabilities().pause`; skipped elsewhere): a
 * paused sandbox's processes use no CPU and keep their memory (a counter continues from where it
 * stopped), exec and file calls on it fail at once with `PAUSED`, both calls are idempotent, and
 * removing a paused sandbox works.
 */
export function registerPauseCases(context: ConformanceContext): void {
  it('pause: frozen processes use no CPU, keep their state and continue after resume; exec and files refuse while paused; idempotent; remove of a paused sandbox works', async (t) => {
    const runtime = context.runtime;
    if (!runtime.capabilities().pause || !runtime.pause || !runtime.resume) {
      t.skip(`the ${runtime.name} driver cannot pause`);
      return;
    }
    // The start command is a busy counter: its count lives only in the shell's memory, written out with its pid.
    const startCommand = 'i=0; while :; do i=$((i+1)); echo "$$ $i" > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; done';
    const { runtimeId } = await runtime.create(makeSpec(context.image, { startCommand }));
    try {
      const before = await counterPast(runtime, runtimeId, 50);

      await within(30_000, 'pause', runtime.pause(runtimeId));
      await within(30_000, 'a second pause', runtime.pause(runtimeId));
      const state = await runtime.inspect(runtimeId);
      assert.equal(state?.running, true, 'a paused sandbox is still running');
      if (state?.paused !== undefined) assert.equal(state.paused, true, 'inspect reports it paused');

      const cpuAtPause = (await runtime.stats(runtimeId)).cpuUsageNanos;
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const cpuLater = (await runtime.stats(runtimeId)).cpuUsageNanos;
      assert.ok(cpuLater - cpuAtPause <= FROZEN_CPU_SLACK_NS, `a paused busy loop used ${(cpuLater - cpuAtPause) / 1e6} ms of CPU in 1.5 s`);

      await assertRefusedPaused('exec', () => runtime.exec(runtimeId, { argv: ['/bin/true'] }));
      await assertRefusedPaused('getFile', () => runtime.getFile(runtimeId, '/tmp/counter'));

      await within(30_000, 'resume', runtime.resume(runtimeId));
      await within(30_000, 'a second resume', runtime.resume(runtimeId));
      if ((await runtime.inspect(runtimeId))?.paused !== undefined) assert.equal((await runtime.inspect(runtimeId))?.paused, false, 'inspect reports it resumed');
      const after = await readCounter(runtime, runtimeId);
      assert.equal(after.pid, before.pid, 'the same counter process runs after resume');
      assert.ok(after.count >= before.count, `the counter continued from ${before.count}, not from ${after.count}`);
      const later = await counterPast(runtime, runtimeId, after.count);
      assert.equal(later.pid, before.pid);

      // Removing a paused sandbox kills it and leaves nothing behind.
      await within(30_000, 'pause before remove', runtime.pause(runtimeId));
      await within(60_000, 'remove of a paused sandbox', runtime.remove(runtimeId));
      assert.equal(await runtime.inspect(runtimeId), undefined, 'the paused sandbox is gone');
      assert.ok(!(await runtime.list()).some((s) => s.runtimeId === runtimeId), 'list no longer shows it');
    } finally {
      await runtime.remove(runtimeId).catch(() => undefined);
    }
  });
}

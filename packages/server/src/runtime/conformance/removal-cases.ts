import assert from 'node:assert/strict';
import { it } from 'node:test';
import { makeSpec, runToEnd } from './conformance-suite.js';
import type { ConformanceContext } from './conformance-suite.js';

/**
 * Driver-specific ways to make a removal fail, which a driver's conformance test provides: the
 * host objects a sandbox owns, and an obstacle that makes its removal fail part-way.
 */
export interface RemovalFaults {
  /**
   * Notes the host objects a running sandbox owns (mounts, loop devices, network namespace,
   * cgroups, directories, the container…). The returned function lists those still present.
   */
  trackHostObjects(runtimeId: string): Promise<() => Promise<string[]>>;
  /** Puts something in the way of the sandbox's removal; the returned function takes it away. */
  obstructRemoval(runtimeId: string): Promise<() => Promise<void>>;
}

/** A removal that fails is retried: the sandbox stays listed until a later `remove()` finishes it, and nothing is left. */
export function registerRemovalCases(context: ConformanceContext): void {
  it('remove: a removal that fails part-way keeps the sandbox listed (ended); a later remove finishes it and leaves nothing on the host', async (t) => {
    const faults = context.removalFaults;
    if (!faults) {
      t.skip('this driver test provides no way to make a removal fail');
      return;
    }
    const runtime = context.runtime;
    const spec = makeSpec(context.image);
    const { runtimeId } = await runtime.create(spec);
    let removed = false;
    try {
      assert.equal((await runToEnd(runtime, runtimeId, 'echo data > /tmp/f && cat /tmp/f')).stdout, 'data\n');
      const remaining = await faults.trackHostObjects(runtimeId);
      assert.notDeepEqual(await remaining(), [], 'the sandbox owns host objects the test can see');
      const lift = await faults.obstructRemoval(runtimeId);
      try {
        await assert.rejects(runtime.remove(runtimeId), 'the obstructed removal reports its failure');
        const listed = (await runtime.list()).filter((s) => s.runtimeId === runtimeId);
        assert.equal(listed.length, 1, 'a sandbox whose removal failed is still listed, so the reconciler retries it');
        assert.equal(listed[0]?.sandboxId, spec.sandboxId);
        assert.equal(listed[0]?.running, false);
        await assert.rejects(runtime.exec(runtimeId, { argv: ['true'] }), 'a half-removed sandbox runs nothing');
      } finally {
        await lift();
      }
      await runtime.remove(runtimeId);
      removed = true;
      assert.equal((await runtime.list()).filter((s) => s.runtimeId === runtimeId).length, 0);
      assert.equal(await runtime.inspect(runtimeId), undefined);
      // The kernel detaches a loop device on its last close, which can trail the unmount a little.
      let left = await remaining();
      for (let i = 0; i < 50 && left.length > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        left = await remaining();
      }
      assert.deepEqual(left, [], 'the retried removal left nothing on the host');
      // Idempotent once done.
      await runtime.remove(runtimeId);
    } finally {
      if (!removed) await runtime.remove(runtimeId).catch(() => undefined);
    }
  });
}

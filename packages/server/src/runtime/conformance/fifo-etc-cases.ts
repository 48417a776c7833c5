import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { it } from 'node:test';
import type { ExecProcess } from '../runtime.js';
import { type ConformanceContext, makeSpec, runToEnd, within } from './conformance-suite.js';

/** Host processes whose name starts with `runc` (runc itself, `runc:[2:INIT]`…), as `pid:starttime`. */
async function hostRuncProcesses(): Promise<Set<string>> {
  const out = new Set<string>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    if (open < 0 || close < open) continue;
    if (!stat.slice(open + 1, close).startsWith('runc')) continue;
    // Field 22 (starttime) tells a reused pid apart; fields after the name start at field 3.
    const starttime = stat.slice(close + 2).split(' ')[19];
    out.add(`${name}:${starttime}`);
  }
  return out;
}

/** Processes in both sets: runc processes that stayed across an interval. */
function lingering(before: Set<string>, after: Set<string>): string[] {
  return [...after].filter((p) => before.has(p));
}

/**
 * Cases about a sandbox that turns its /etc/passwd and /etc/group into FIFOs, which would block
 * any reader that opens them: its execs (pending ones included) and its removal must still end,
 * within bounds, and leave nothing behind on the host.
 */
export function registerFifoEtcCases(context: ConformanceContext): void {
  it('fifo /etc: a sandbox with FIFO /etc/passwd and /etc/group and pending execs is removed within 20 s and leaves nothing', async () => {
    const { runtime: rt, image } = context;
    // runc processes that exist already belong to other sandboxes (or other test runs): not counted.
    const baseline = await hostRuncProcesses();
    const { runtimeId: id } = await rt.create(makeSpec(image));
    const pending: ExecProcess[] = [];
    try {
      const setup = await runToEnd(rt, id, 'rm -f /etc/passwd /etc/group && mkfifo /etc/passwd /etc/group && [ -p /etc/passwd ] && echo ok');
      assert.equal(setup.stdout, 'ok\n', setup.stderr);
      // Execs started now may block in the runtime (docker's runc opens /etc/passwd for every exec).
      for (const request of [{ argv: ['id', '-u'], user: 'nobody' }, { argv: ['echo', 'root'] }, { argv: ['cat'], stdin: true }]) {
        const proc = await within(20_000, 'starting an exec', rt.exec(id, request));
        proc.stdout.resume();
        proc.stderr.resume();
        pending.push(proc);
      }
      await new Promise((r) => setTimeout(r, 300));
      const stuckBefore = await hostRuncProcesses();
      await within(20_000, 'removing the sandbox', rt.remove(id));
      assert.equal(await within(5000, 'inspect after remove', rt.inspect(id)), undefined);
      assert.ok(!(await within(5000, 'list after remove', rt.list())).some((s) => s.runtimeId === id), 'the sandbox is still listed');
      const exits = await within(10_000, 'the pending execs ending', Promise.all(pending.map((p) => p.wait())));
      // A root exec may have run before the removal (a driver that needs no /etc/passwd for root); the user's cannot have.
      assert.notEqual(exits[0]?.exitCode, 0, 'an exec as a user whose /etc/passwd is a FIFO reported success');
      // Host-wide runc processes include other tests' execs starting at the same time on a loaded
      // host; those end within seconds, while a runc stuck on this sandbox's FIFO never would.
      let left: string[] = [];
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 500));
        left = lingering(stuckBefore, await hostRuncProcesses()).filter((p) => !baseline.has(p));
        if (left.length === 0) break;
      }
      assert.deepEqual(left, [], `runc processes from before the removal are still alive: ${left.join(' ')}`);
    } finally {
      await within(20_000, 'removing the sandbox (cleanup)', rt.remove(id)).catch(() => undefined);
    }
  });
}

/**
 * Memory checkpoints on the oci driver (runc + CRIU) with real sandboxes: a counter kept only in a
 * shell's memory continues in every restored copy, whose agent serves execs and whose network the
 * driver plumbs; what cannot be dumped is refused with the reason.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runToEnd } from '../conformance/conformance-suite.js';
import type { SandboxSpec } from '../runtime.js';
import { OciRuntime } from './oci-runtime.js';
import { CheckpointStore } from './checkpoint-store.js';
import { criuCandidates, probeCriu } from './criu-checkpoint.js';
import { ociMissing } from '../../testing/runtime-available.js';
import { specFixture } from '../../testing/sandbox-fixture.js';
import { insecureRegistriesFor } from '../../testing/local-registries.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const STATE_DIR = join(CACHE, 'oci-test');

async function missing(): Promise<string | undefined> {
  const oci = ociMissing({ runtime: 'runc', registryImage: IMAGE });
  if (oci) return oci;
  const probe = await probeCriu(criuCandidates(CACHE));
  return probe.ok ? undefined : probe.reason;
}
const reason = await missing();
if (reason && process.env.CI === 'true') throw new Error(`memory-checkpoint.test.ts cannot run: ${reason}`);

function spec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return specFixture({ sandboxId: `mc${randomBytes(5).toString('hex')}`, image: IMAGE, memoryBytes: 128 * 1024 * 1024, diskBytes: 256 * 1024 * 1024, pidsLimit: 64, ...overrides });
}

async function sh(runtime: OciRuntime, runtimeId: string, script: string): Promise<string> {
  const result = await runToEnd(runtime, runtimeId, script);
  assert.equal(result.exitCode, 0, `${script}: ${result.stderr}`);
  return result.stdout;
}

/** The counter: its value lives only in the shell's memory; each tick writes it to /tmp/count. */
const COUNTER = `sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done' >/dev/null 2>&1 &`;

async function count(runtime: OciRuntime, runtimeId: string): Promise<number> {
  return Number((await sh(runtime, runtimeId, 'cat /tmp/count')).trim());
}

/** The counter's value, or 0 before its first tick has written /tmp/count (a loaded host took longer than one exec). */
async function countSoFar(runtime: OciRuntime, runtimeId: string): Promise<number> {
  return Number((await sh(runtime, runtimeId, 'cat /tmp/count 2>/dev/null || echo 0')).trim());
}

async function eventually(check: () => Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('oci memory checkpoints (runc + CRIU)', { skip: reason, timeout: 300_000 }, () => {
  const instance = `memck-${randomBytes(4).toString('hex')}`;
  const refs: string[] = [];
  let runtime: OciRuntime;
  const newRef = (): string => {
    const ref = `mc${randomBytes(6).toString('hex')}`;
    refs.push(ref);
    return ref;
  };

  before(async () => {
    runtime = new OciRuntime({ instance, stateDir: STATE_DIR, runtimeBinary: 'runc', criu: criuCandidates(CACHE), insecureRegistries: insecureRegistriesFor(IMAGE), poolSize: 1, warmDiskSizes: [] });
    await runtime.init();
  });

  after(async () => {
    const store = new CheckpointStore(join(STATE_DIR, 'checkpoints'));
    for (const ref of refs) await store.delete(ref);
    if (runtime) {
      for (const s of await runtime.list().catch(() => [])) await runtime.remove(s.runtimeId).catch(() => undefined);
      await runtime.close().catch(() => undefined);
    }
    await rm(join(STATE_DIR, 'instances', instance), { recursive: true, force: true });
  });

  it('says it can checkpoint memory; crun cannot, and says why', () => {
    assert.equal(runtime.capabilities().memoryCheckpoint, true, runtime.capabilities().memoryCheckpointUnavailable);
    const crun = new OciRuntime({ instance: `${instance}-crun`, stateDir: STATE_DIR, runtimeBinary: 'crun' });
    assert.equal(crun.capabilities().memoryCheckpoint, false);
    assert.match(crun.capabilities().memoryCheckpointUnavailable ?? '', /crun is built without CRIU.*CORRAL_OCI_RUNTIME=runc/);
  });

  it('a counter kept in memory continues in each restored copy, which serves execs, has its own network and keeps the files', async () => {
    const source = (await runtime.create(spec({ networkAccess: true }))).runtimeId;
    await sh(runtime, source, `echo kept > /sandbox-workspace/file; ${COUNTER}`);
    await eventually(async () => (await countSoFar(runtime, source)) >= 10, 'the counter to reach 10');

    const ref = newRef();
    let frozen = 0;
    const taken = await runtime.checkpoint(source, { checkpointId: ref, memory: true, onFrozen: () => frozen++ });
    assert.equal(taken.memory, true);
    assert.equal(frozen, 1);
    const atCapture = await count(runtime, source);
    // The source runs on after the dump.
    await eventually(async () => (await count(runtime, source)) > atCapture + 5, 'the source to go on counting');
    // Later changes stay in the source.
    await sh(runtime, source, 'echo later > /sandbox-workspace/file');

    const copies = await Promise.all([1, 2].map(async () => (await runtime.create(spec({ networkAccess: true, checkpoint: { ref, memory: true } }))).runtimeId));
    const addresses = new Set<string>();
    const firsts: number[] = [];
    for (const copy of copies) {
      const first = await count(runtime, copy);
      firsts.push(first);
      // Continues from the captured count (a new process would start at 1), and keeps counting.
      assert.ok(first >= atCapture - 25 && first <= atCapture + 25 + 200, `copy starts at ${first}, capture near ${atCapture}`);
      await eventually(async () => (await count(runtime, copy)) > first + 5, 'the copy to go on counting');
      assert.equal((await sh(runtime, copy, 'cat /sandbox-workspace/file')).trim(), 'kept');
      // Exactly one counter: the restored one (ps shows the restored loop, not a fresh one).
      const loops = (await sh(runtime, copy, 'ps -o args')).split('\n').filter((l) => l.includes('i=$((i+1))'));
      assert.equal(loops.length, 1, loops.join('\n'));
      // PID 1 is named as in any sandbox (the agent re-executed itself through /proc/self/exe, which would name it "exe").
      assert.equal((await sh(runtime, copy, 'cat /proc/1/comm')).trim(), (await sh(runtime, source, 'cat /proc/1/comm')).trim());
      // Its own network namespace, plumbed by the driver: an address on the bridge and a default route.
      const addr = (await sh(runtime, copy, 'ip -4 -o addr show eth0')).trim();
      const ip = /inet (\d+\.\d+\.\d+\.\d+)/.exec(addr)?.[1];
      assert.ok(ip, addr);
      addresses.add(ip);
      assert.match(await sh(runtime, copy, 'ip route'), /^default via /m);
      assert.equal((await sh(runtime, copy, 'hostname')).trim(), `sandbox-${(await runtime.inspect(copy))?.sandboxId}`.slice(0, 63));
    }
    assert.equal(addresses.size, 2, 'each copy has its own address');
    const sourceIp = /inet (\d+\.\d+\.\d+\.\d+)/.exec(await sh(runtime, source, 'ip -4 -o addr show eth0'))?.[1];
    assert.ok(sourceIp && !addresses.has(sourceIp));

    // A copy is dumped again like any sandbox (the restoring shim moved its exec socket into its network namespace),
    // and a copy of the copy goes on counting too.
    const again = newRef();
    assert.equal((await runtime.checkpoint(copies[0]!, { checkpointId: again, memory: true, parentRef: ref })).memory, true);
    const grandchild = (await runtime.create(spec({ checkpoint: { ref: again, memory: true } }))).runtimeId;
    const grandFirst = await count(runtime, grandchild);
    assert.ok(grandFirst > firsts[0]!, `the copy of the copy counts from ${grandFirst}, the copy from ${firsts[0]}`);
    await eventually(async () => (await count(runtime, grandchild)) > grandFirst + 5, 'the copy of the copy to go on counting');
    await runtime.remove(grandchild);
    // Its filesystem checkpoint works too.
    assert.equal((await runtime.checkpoint(copies[0]!, { checkpointId: newRef(), memory: false })).memory, false);

    // Removing a copy removes its adopted network namespace.
    const names = new Set(await readdir('/run/netns'));
    await runtime.remove(copies[1]!);
    const after = new Set(await readdir('/run/netns'));
    assert.equal([...names].filter((n) => !after.has(n)).length, 1);
    // Deleting the checkpoint deletes its CRIU image; the copy left keeps running.
    await runtime.deleteCheckpoint(ref);
    assert.equal(existsSync(join(STATE_DIR, 'checkpoints', 'memory', ref)), false);
    assert.ok((await count(runtime, copies[0]!)) > 0);
  });

  it('without a user namespace (CORRAL_OCI_USERNS=off) too: the copy goes on counting, offline', async () => {
    const plain = new OciRuntime({ instance: `${instance}-plain`, stateDir: STATE_DIR, runtimeBinary: 'runc', criu: criuCandidates(CACHE), insecureRegistries: insecureRegistriesFor(IMAGE), poolSize: 0, warmDiskSizes: [], userns: null });
    await plain.init();
    try {
      assert.equal(plain.isolation().userNamespace, false);
      const source = (await plain.create(spec())).runtimeId;
      await sh(plain, source, COUNTER);
      await eventually(async () => (await countSoFar(plain, source)) >= 5, 'the counter to start');
      const ref = newRef();
      await plain.checkpoint(source, { checkpointId: ref, memory: true });
      const atCapture = await count(plain, source);
      const copy = (await plain.create(spec({ checkpoint: { ref, memory: true } }))).runtimeId;
      const first = await count(plain, copy);
      assert.ok(first >= atCapture - 25, `copy starts at ${first}, capture near ${atCapture}`);
      await eventually(async () => (await count(plain, copy)) > first + 5, 'the copy to go on counting');
      // Offline: only lo, up.
      assert.equal((await sh(plain, copy, 'ls /sys/class/net')).trim(), 'lo');
    } finally {
      for (const s of await plain.list().catch(() => [])) await plain.remove(s.runtimeId).catch(() => undefined);
      await plain.close().catch(() => undefined);
      await rm(join(STATE_DIR, 'instances', `${instance}-plain`), { recursive: true, force: true });
    }
  });

  it('survives a driver restart: the checkpoint restores from the new process, and a restored sandbox is adopted and serves execs', async () => {
    const again = `${instance}-restart`;
    const make = (): OciRuntime => new OciRuntime({ instance: again, stateDir: STATE_DIR, runtimeBinary: 'runc', criu: criuCandidates(CACHE), insecureRegistries: insecureRegistriesFor(IMAGE), poolSize: 0, warmDiskSizes: [] });
    let first: OciRuntime | undefined = make();
    let second: OciRuntime | undefined;
    try {
      await first.init();
      const source = (await first.create(spec())).runtimeId;
      await sh(first, source, COUNTER);
      await eventually(async () => (await countSoFar(first!, source)) >= 5, 'the counter to start');
      const ref = newRef();
      await first.checkpoint(source, { checkpointId: ref, memory: true });
      const atCapture = await count(first, source);
      const copy = (await first.create(spec({ checkpoint: { ref, memory: true } }))).runtimeId;
      await first.close();
      first = undefined;

      second = make();
      await second.init();
      const rt = second;
      // The copy restored by the first process is adopted: listed, running, its agent answering, still counting.
      assert.ok((await rt.list()).some((s) => s.runtimeId === copy && s.running));
      const before = await count(rt, copy);
      await eventually(async () => (await count(rt, copy)) > before + 3, 'the adopted copy to go on counting');
      // The checkpoint restores from the new process too.
      const later = (await rt.create(spec({ checkpoint: { ref, memory: true } }))).runtimeId;
      const from = await count(rt, later);
      assert.ok(from >= atCapture - 25, `the copy made after the restart counts from ${from}, capture near ${atCapture}`);
      await eventually(async () => (await count(rt, later)) > from + 3, 'the copy made after the restart to go on counting');
    } finally {
      for (const rt of [first, second]) {
        if (!rt) continue;
        for (const s of await rt.list().catch(() => [])) await rt.remove(s.runtimeId).catch(() => undefined);
        await rt.close().catch(() => undefined);
      }
      await rm(join(STATE_DIR, 'instances', again), { recursive: true, force: true });
    }
  });

  it('a listening server and an open TCP connection: the copy serves on its restored listener, its connection comes back closed, the source keeps its own', async () => {
    const source = (await runtime.create(spec())).runtimeId;
    await sh(runtime, source, 'mkdir -p /www && echo hello > /www/index.html && httpd -p 8000 -h /www');
    await eventually(async () => (await runToEnd(runtime, source, 'wget -qO- http://127.0.0.1:8000/')).stdout === 'hello\n', 'httpd to serve');
    // A connection that stays open: nc reads from a pipe that never ends.
    await sh(runtime, source, "sh -c 'while :; do sleep 1; done | nc 127.0.0.1 8000 >/dev/null' >/dev/null 2>&1 &");
    const ncRunning = async (id: string): Promise<boolean> => (await sh(runtime, id, 'ps -o args')).split('\n').some((l) => /^nc 127/.test(l));
    await eventually(() => ncRunning(source), 'nc to connect');
    const ref = newRef();
    assert.equal((await runtime.checkpoint(source, { checkpointId: ref, memory: true })).memory, true);
    const copy = (await runtime.create(spec({ checkpoint: { ref, memory: true } }))).runtimeId;
    assert.equal((await sh(runtime, copy, 'wget -qO- http://127.0.0.1:8000/')), 'hello\n');
    await eventually(async () => !(await ncRunning(copy)), "the copy's connection to be closed (nc exits)");
    assert.ok(await ncRunning(source), 'the source keeps its connection');
  });

  it('an exec started during the dump waits for it; an exec still attached after the wait fails the checkpoint with the reason', async () => {
    const source = (await runtime.create(spec())).runtimeId;
    await sh(runtime, source, COUNTER);
    // A command attached for longer than the checkpoint waits.
    const long = await runtime.exec(source, { argv: ['/bin/sh', '-c', 'sleep 15'] });
    long.stdout.resume();
    long.stderr.resume();
    const started = Date.now();
    await assert.rejects(runtime.checkpoint(source, { checkpointId: newRef(), memory: true }), (error: Error) => /command\(s\) kept running/.test(error.message));
    assert.ok(Date.now() - started >= 9_000);
    await long.kill('SIGKILL');
    await long.wait();
    // Execs arriving while a dump runs are held and then served.
    const ref = newRef();
    const capture = runtime.checkpoint(source, { checkpointId: ref, memory: true });
    const during = await Promise.all([1, 2, 3].map(() => runToEnd(runtime, source, 'echo served')));
    for (const result of during) assert.equal(result.stdout, 'served\n');
    assert.equal((await capture).memory, true);
  });
});

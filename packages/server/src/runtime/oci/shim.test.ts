/**
 * What the shim does so that CRIU can dump a sandbox, checked for what a hostile sandbox could make
 * of it:
 * - it copies the sandbox's stdout and stderr from a pipe into its log. The shim runs outside the
 *   sandbox's cgroup, so the copy must not let a sandbox spend the host's CPU beyond its own limit
 *   by printing as fast as it can;
 * - it makes the agent's exec socket inside the sandbox's network namespace, so the sandbox sees it
 *   listed in /proc/net/unix: it must still not reach it (its path is not in the sandbox's mounts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { runToEnd } from '../conformance/conformance-suite.js';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OciRuntime } from './oci-runtime.js';
import { ociMissing } from '../../testing/runtime-available.js';
import { specFixture } from '../../testing/sandbox-fixture.js';
import { insecureRegistriesFor } from '../../testing/local-registries.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const STATE_DIR = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'oci-test');
const RUNTIME = process.env.CORRAL_OCI_RUNTIME ?? 'runc';
const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) process `pid` has used. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

async function parentOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

const reason = ociMissing({ runtime: RUNTIME, registryImage: IMAGE });
describe('oci shim: the output it copies, the socket it makes', { skip: reason, timeout: 120_000 }, () => {
  const instance = `shimout-${randomBytes(4).toString('hex')}`;
  let runtime: OciRuntime;

  before(async () => {
    runtime = new OciRuntime({ instance, stateDir: STATE_DIR, runtimeBinary: RUNTIME, insecureRegistries: insecureRegistriesFor(IMAGE), poolSize: 0, warmDiskSizes: [] });
    await runtime.init();
  });

  after(async () => {
    for (const s of await runtime.list().catch(() => [])) await runtime.remove(s.runtimeId).catch(() => undefined);
    await runtime.close().catch(() => undefined);
    await rm(join(STATE_DIR, 'instances', instance), { recursive: true, force: true });
  });

  it("reaches the logs, and a sandbox printing flat out costs the shim (outside the sandbox's cgroup) little CPU", async () => {
    const spec = specFixture({ sandboxId: `so${randomBytes(5).toString('hex')}`, image: IMAGE, cpuCores: 1, diskBytes: 1024 * 1024 * 1024, startCommand: 'echo started; exec yes corral' });
    const { runtimeId } = await runtime.create(spec);
    const initPid = Number((await readFile(join(STATE_DIR, 'instances', instance, 'sandboxes', runtimeId, 'init.pid'), 'utf8')).trim());
    const shim = await parentOf(initPid);
    const before = await cpuSeconds(shim);
    const started = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const used = (await cpuSeconds(shim)) - before;
    const wall = (Date.now() - started) / 1000;
    const logs = await runtime.logs(runtimeId, 4096);
    assert.match(logs, /corral\n/);
    // At most a tenth of one CPU for the copy, however fast the sandbox prints.
    assert.ok(used < 0.1 * wall, `the shim used ${used.toFixed(2)} s of CPU in ${wall.toFixed(1)} s copying the sandbox's output`);
  });

  it("lists the agent's socket in the sandbox's network namespace, where the sandbox cannot reach it", async () => {
    const { runtimeId } = await runtime.create(specFixture({ sandboxId: `so${randomBytes(5).toString('hex')}`, image: IMAGE }));
    const listed = await runToEnd(runtime, runtimeId, "grep -o '/[^ ]*\\.sock' /proc/net/unix");
    const path = listed.stdout.trim().split('\n')[0] ?? '';
    assert.match(path, /^\/run\/corral-oci\/.+\.sock$/, `the agent's socket is listed: ${listed.stdout}${listed.stderr}`);
    const reached = await runToEnd(runtime, runtimeId, `test -e '${path}' || ls -d '${path.slice(0, path.lastIndexOf('/'))}'`);
    assert.notEqual(reached.exitCode, 0, `the sandbox sees ${path} or its directory`);
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runToEnd } from '../conformance/conformance-suite.js';
import type { SandboxSpec } from '../runtime.js';
import { ImageStore } from '../oci-images/image-store.js';
import { OciRuntime } from './oci-runtime.js';
import { USERNS_DIR } from './sandbox-network.js';
import { ensureAgentBinary } from '../native-build.js';
import { DEFAULT_USERNS_MAPPING, usernsUnavailable } from './userns.js';
import { ociMissing } from '../../testing/runtime-available.js';
import { insecureRegistriesFor } from '../../testing/local-registries.js';
import { specFixture } from '../../testing/sandbox-fixture.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const STATE_DIR = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'oci-test');
const RUNTIME = process.env.CORRAL_OCI_RUNTIME ?? 'runc';
const { hostUid, hostGid, size } = DEFAULT_USERNS_MAPPING;

function spec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return specFixture({
    sandboxId: `un${randomBytes(5).toString('hex')}`,
    image: IMAGE,
    memoryBytes: 128 * 1024 * 1024,
    diskBytes: 256 * 1024 * 1024,
    pidsLimit: 64,
    networkAccess: false,
    ...overrides,
  });
}

/** Real, effective, saved and filesystem uid of a host process. */
async function hostUids(pid: number): Promise<number[]> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return (/^Uid:\s+(.*)$/m.exec(status)?.[1] ?? '').trim().split(/\s+/).map(Number);
}

const reason = ociMissing({ runtime: RUNTIME, registryImage: IMAGE });
describe('oci runtime: user namespace', { skip: reason }, () => {
  const instance = `userns-${randomBytes(4).toString('hex')}`;
  const images = new ImageStore({ root: join(STATE_DIR, 'images'), insecureRegistries: insecureRegistriesFor(IMAGE) });
  const rt = new OciRuntime({ instance, stateDir: STATE_DIR, images, runtimeBinary: RUNTIME, poolSize: 1, warmDiskSizes: [] });
  let unavailable: string | undefined;

  before(async () => {
    unavailable = await usernsUnavailable(DEFAULT_USERNS_MAPPING, join(STATE_DIR, 'images', 'tmp'), await ensureAgentBinary(join(STATE_DIR, 'bin')));
    await rt.init();
  });

  after(async () => {
    for (const s of await rt.list()) await rt.remove(s.runtimeId);
    await rt.close();
    await rm(join(STATE_DIR, 'instances', instance), { recursive: true, force: true });
  });

  it('is on by default where the host allows it, off otherwise', () => {
    assert.deepEqual(rt.userns, unavailable === undefined ? DEFAULT_USERNS_MAPPING : null);
  });

  it('root in the sandbox is an unprivileged host uid, and can still do what root does there', async (t) => {
    if (unavailable !== undefined) return t.skip(unavailable);
    const { runtimeId } = await rt.create(spec());
    const run = async (script: string, user?: string): Promise<string> => {
      const r = await runToEnd(rt, runtimeId, user === undefined ? script : { argv: ['/bin/sh', '-c', script], user });
      assert.equal(r.exitCode, 0, `${script}: ${r.stdout}${r.stderr}`);
      return r.stdout;
    };

    assert.equal(await run('id -u; id -g'), '0\n0\n');
    assert.deepEqual((await run('cat /proc/self/uid_map /proc/self/gid_map')).trim().split(/\s+/).map(Number), [0, hostUid, size, 0, hostGid, size]);

    // From the host: every process of the sandbox runs as the mapped root.
    const procs = (await readFile(join('/sys/fs/cgroup/pids/corral-oci', instance, runtimeId, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean).map(Number);
    assert.ok(procs.length > 0);
    for (const pid of procs) assert.deepEqual(await hostUids(pid), [hostUid, hostUid, hostUid, hostUid], `pid ${pid}`);

    // Root owns the image's files and what the host made for it.
    assert.equal(await run('stat -c %u:%g /etc/passwd /bin/busybox / /sandbox-workspace /etc/hosts /etc/resolv.conf /etc/hostname'), '0:0\n'.repeat(7));
    await run('echo 127.0.0.2 extra >> /etc/hosts && echo etc > /etc/corral-userns && echo ws > /sandbox-workspace/f && chown 1000:1000 /sandbox-workspace/f');
    assert.equal(await run('stat -c %u:%g /sandbox-workspace/f'), '1000:1000\n');
    assert.equal(await run('id -u; echo mine > /tmp/u1000; stat -c %u /tmp/u1000; cat /sandbox-workspace/f', '1000'), '1000\n1000\nws\n');

    // On the host, in the overlay's upper directory, files carry host ids.
    const sandboxDir = join(STATE_DIR, 'instances', instance, 'sandboxes', runtimeId);
    const record = JSON.parse(await readFile(join(sandboxDir, 'state.json'), 'utf8')) as { diskId: string };
    const upper = join(STATE_DIR, 'instances', instance, 'disks', record.diskId, 'mnt', 'upper');
    const owner = async (p: string): Promise<number[]> => {
      const s = await stat(join(upper, p));
      return [s.uid, s.gid];
    };
    assert.deepEqual(await owner('etc/corral-userns'), [hostUid, hostGid]);
    assert.deepEqual(await owner('sandbox-workspace/f'), [hostUid + 1000, hostGid + 1000]);
    assert.deepEqual(await owner('tmp/u1000'), [hostUid + 1000, hostGid + 1000]);

    // Its user namespace owns its network namespace: root binds ports below 1024, sysfs shows its interfaces.
    assert.match(await run('nc -l -p 80 & sleep 0.3; netstat -ltn; kill $!'), /:80\s/);
    assert.equal(await run('ls /sys/class/net'), 'lo\n');
    assert.match(await run('touch /sys/kernel/x 2>&1 || true'), /Read-only/);
    const kept = join(USERNS_DIR, (JSON.parse(await readFile(join(sandboxDir, 'state.json'), 'utf8')) as { netns: { name: string } }).netns.name);
    assert.ok(existsSync(kept));
    await rt.remove(runtimeId);
    assert.ok(!existsSync(kept), 'the user namespace is released with the sandbox');
    assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(kept));
  });

  it('null turns it off: root in the sandbox is host root', async () => {
    const off = new OciRuntime({ instance: `${instance}-off`, stateDir: STATE_DIR, images, runtimeBinary: RUNTIME, poolSize: 0, warmDiskSizes: [], userns: null });
    await off.init();
    try {
      assert.equal(off.userns, null);
      const { runtimeId } = await off.create(spec());
      assert.equal((await runToEnd(off, runtimeId, 'cat /proc/self/uid_map')).stdout.trim().split(/\s+/).join(' '), '0 0 4294967295');
      await off.remove(runtimeId);
    } finally {
      await off.close();
      await rm(join(STATE_DIR, 'instances', `${instance}-off`), { recursive: true, force: true });
    }
  });
});

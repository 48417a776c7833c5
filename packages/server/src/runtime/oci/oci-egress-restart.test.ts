import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runToEnd } from '../conformance/conformance-suite.js';
import { egressTableName, egressTag } from '../egress/egress-firewall.js';
import { egressLogPrefix } from '../egress/egress-log.js';
import { ImageStore } from '../oci-images/image-store.js';
import { OciRuntime } from './oci-runtime.js';
import { OCI_INPUT_CHAIN } from './sandbox-network.js';
import { ociMissing } from '../../testing/runtime-available.js';
import { insecureRegistriesFor } from '../../testing/local-registries.js';
import { specFixture } from '../../testing/sandbox-fixture.js';
import { TestInternet } from '../../testing/test-internet.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const STATE_DIR = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'oci-test');
const RUNTIME = process.env.CORRAL_OCI_RUNTIME ?? 'runc';

/** The last line an HTTP GET of `target` printed in the sandbox, or the error. */
async function get(rt: OciRuntime, id: string, target: string): Promise<string> {
  const r = await runToEnd(rt, id, `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 ${target} 80`);
  return r.exitCode === 0 ? (r.stdout.trim().split('\n').pop() ?? '') : `error: ${r.stderr.trim()}`;
}

function tableExists(name: string): boolean {
  return execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).includes(`inet ${name}`);
}

describe('oci runtime: egress policy across a driver restart', { skip: ociMissing({ runtime: RUNTIME, registryImage: IMAGE }) }, () => {
  const instance = `egress-restart-${randomBytes(4).toString('hex')}`;
  const images = new ImageStore({ root: join(STATE_DIR, 'images'), insecureRegistries: insecureRegistriesFor(IMAGE) });
  let internet: TestInternet;
  const make = (): OciRuntime =>
    new OciRuntime({ instance, stateDir: STATE_DIR, images, runtimeBinary: RUNTIME, poolSize: 0, warmDiskSizes: [], egressDnsUpstream: internet.dnsAddress });

  before(async () => {
    internet = await TestInternet.start();
  });

  after(async () => {
    const rt = make();
    await rt.init().catch(() => undefined);
    for (const s of await rt.list().catch(() => [])) await rt.remove(s.runtimeId).catch(() => undefined);
    await rt.close();
    await internet.close();
    await rm(join(STATE_DIR, 'instances', instance), { recursive: true, force: true });
  });

  it("redirected DNS is accepted whatever order the host's INPUT jumps are in (another driver started after the resolver)", async () => {
    const rt = make();
    await rt.init();
    const { runtimeId } = await rt.create(
      specFixture({ sandboxId: `eo${randomBytes(5).toString('hex')}`, image: IMAGE, memoryBytes: 128 * 1024 * 1024, diskBytes: 256 * 1024 * 1024, pidsLimit: 64, networkAccess: true, egress: { allowlist: ['*.example.test'], denylist: null } }),
    );
    // What a driver process starting now may do: put its own INPUT chain (which drops new
    // connections from the bridge) ahead of everything, the resolver's accept included.
    execFileSync('iptables', ['-w', '5', '-I', 'INPUT', '1', '-j', OCI_INPUT_CHAIN]);
    try {
      assert.equal(await get(rt, runtimeId, 'api.example.test'), `hello from ${internet.address('api.example.test')}`, 'the name resolves and the server answers');
    } finally {
      execFileSync('iptables', ['-w', '5', '-D', 'INPUT', '-j', OCI_INPUT_CHAIN]);
      await rt.remove(runtimeId);
      await rt.close();
    }
  });

  it('a new driver process re-applies the recorded policy (resolver and firewall) and changes it on the adopted sandbox; the table goes with the last sandbox', async () => {
    const first = make();
    await first.init();
    const sandboxId = `er${randomBytes(5).toString('hex')}`;
    const { runtimeId } = await first.create(
      specFixture({ sandboxId, image: IMAGE, memoryBytes: 128 * 1024 * 1024, diskBytes: 256 * 1024 * 1024, pidsLimit: 64, networkAccess: true, egress: { allowlist: ['*.example.test'], denylist: null } }),
    );
    const api = internet.address('api.example.test');
    const cdn = internet.address('cdn.other.test');
    assert.equal(await get(first, runtimeId, 'api.example.test'), `hello from ${api}`);
    await first.close();
    assert.ok(tableExists(egressTableName(instance)), 'the rules outlive the driver process while its sandbox runs');

    const second = make();
    await second.init();
    try {
      // Names resolve through the new process's resolver, under the same policy.
      assert.equal(await get(second, runtimeId, 'www.example.test'), `hello from ${internet.address('www.example.test')}`);
      assert.match(await get(second, runtimeId, 'cdn.other.test'), /^error: .*bad address/);
      assert.match(await get(second, runtimeId, cdn), /^error: .*refused/);
      await second.setEgressPolicy(runtimeId, { allowlist: ['cdn.other.test'], denylist: null });
      assert.equal(await get(second, runtimeId, 'cdn.other.test'), `hello from ${cdn}`);
      assert.match(await get(second, runtimeId, api), /^error: .*refused/);
      // One entry per question (A and AAAA are two): consecutive repeats collapsed.
      const asked = (await second.egressLog(runtimeId, 20)).filter((e) => e.kind === 'dns').map((e) => `${e.destination} ${e.verdict}`);
      assert.deepEqual(asked.filter((e, i) => e !== asked[i - 1]).slice(-3), ['www.example.test allowed', 'cdn.other.test denied', 'cdn.other.test allowed']);
      // What the connection logger reports shows up in the sandbox's log; other prefixes are ignored.
      const tag = egressTag(instance, runtimeId);
      second.egressConnectionLog.recordPacket({ prefix: egressLogPrefix(tag, 'denied'), src: '10.213.0.9', dst: api, protocol: 'tcp', dport: 80 });
      second.egressConnectionLog.recordPacket({ prefix: 'something else', src: '10.213.0.9', dst: api, protocol: 'tcp', dport: 81 });
      const connects = (await second.egressLog(runtimeId, 50)).filter((e) => e.kind === 'connect');
      assert.deepEqual(connects.map(({ destination, port, protocol, verdict }) => ({ destination, port, protocol, verdict })), [{ destination: api, port: 80, protocol: 'tcp', verdict: 'denied' }]);
      await second.remove(runtimeId);
    } finally {
      await second.close();
    }
    assert.equal(tableExists(egressTableName(instance)), false, 'closing the driver with no sandbox left deletes its table');
  });
});

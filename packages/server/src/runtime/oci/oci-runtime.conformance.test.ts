import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { runConformanceSuite } from '../conformance/conformance-suite.js';
import { ImageStore } from '../oci-images/image-store.js';
import { criuCandidates } from './criu-checkpoint.js';
import { OciRuntime } from './oci-runtime.js';
import { ensureAgentBinary } from '../native-build.js';
import { DEFAULT_USERNS_MAPPING, usernsUnavailable } from './userns.js';
import { ociMissing } from '../../testing/runtime-available.js';
import { insecureRegistriesFor } from '../../testing/local-registries.js';
import { TestInternet, testConnectionLog } from '../../testing/test-internet.js';
import { immutableObstacle, loopBackingFiles, mountPoints, present } from '../conformance/host-objects.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const STATE_DIR = join(CACHE, 'oci-test');
/** The runtimes the suite runs against: CORRAL_OCI_RUNTIME alone when set, else runc and crun. */
const RUNTIMES = process.env.CORRAL_OCI_RUNTIME ? [process.env.CORRAL_OCI_RUNTIME] : ['runc', 'crun'];
/** `off` runs the suite without user namespaces; by default sandboxes get one where the host allows it. */
const USERNS = process.env.CORRAL_OCI_USERNS === 'off' ? null : undefined;
// One image store for every runtime of the suite: later ones reuse the layers the first pulled.
const images = new ImageStore({ root: join(STATE_DIR, 'images'), insecureRegistries: insecureRegistriesFor(IMAGE) });

for (const runtimeBinary of RUNTIMES) {
  const reason = ociMissing({ runtime: runtimeBinary, registryImage: IMAGE });
  if (reason !== undefined) {
    test(`oci runtime conformance (${runtimeBinary})`, (t) => {
      if (process.env.CI === 'true') throw new Error(reason);
      t.skip(reason);
    });
    continue;
  }
  runConformanceSuite(`oci (${runtimeBinary})`, async () => {
    const instance = `test-${randomBytes(4).toString('hex')}`;
    const testInternet = await TestInternet.start();
    const runtime = new OciRuntime({ instance, stateDir: STATE_DIR, images, runtimeBinary, criu: criuCandidates(CACHE), userns: USERNS, egressDnsUpstream: testInternet.dnsAddress, egressConnectionLog: testConnectionLog(join(STATE_DIR, 'bin')) });
    const instanceDir = join(STATE_DIR, 'instances', instance);
    /** The fields of the driver's per-sandbox state.json the checks need. */
    const recordOf = (runtimeId: string) =>
      JSON.parse(readFileSync(join(instanceDir, 'sandboxes', runtimeId, 'state.json'), 'utf8')) as {
        diskId: string;
        netns: { name: string };
        cgroupsPath: string;
        agentSocket: string;
        rootfs?: string;
      };
    const expected = USERNS === null || (await usernsUnavailable(DEFAULT_USERNS_MAPPING, join(STATE_DIR, 'images', 'tmp'), await ensureAgentBinary(join(STATE_DIR, 'bin')))) !== undefined ? null : DEFAULT_USERNS_MAPPING;
    return {
      runtime,
      image: IMAGE,
      testInternet,
      async cleanup() {
        assert.deepEqual(runtime.userns, expected, 'the suite ran with the user namespace setting it meant to test');
        for (const s of await runtime.list()) await runtime.remove(s.runtimeId);
        // The checkpoint cases' layers (their manifests are deleted by the cases).
        await runtime.pruneCheckpointLayers();
        await runtime.close();
        await testInternet.close();
        await rm(join(STATE_DIR, 'instances', instance), { recursive: true, force: true });
      },
      removalFaults: {
        async trackHostObjects(runtimeId) {
          const record = recordOf(runtimeId);
          const sandboxDir = join(instanceDir, 'sandboxes', runtimeId);
          const diskDir = join(instanceDir, 'disks', record.diskId);
          const rootfs = record.rootfs ?? join(sandboxDir, 'rootfs');
          const cgroupDirs = ['', 'memory', 'pids', 'cpu'].map((c) => join('/sys/fs/cgroup', c, record.cgroupsPath));
          const checks: Record<string, () => boolean> = {
            'sandbox directory': () => existsSync(sandboxDir),
            'rootfs mount': () => mountPoints().has(rootfs),
            'rootfs directory': () => existsSync(rootfs),
            'disk directory': () => existsSync(diskDir),
            'disk mount': () => mountPoints().has(join(diskDir, 'mnt')),
            'loop device': () => loopBackingFiles().some((f) => f.startsWith(`${diskDir}/`)),
            'network namespace': () => record.netns.name !== '' && existsSync(join('/run/netns', record.netns.name)),
            cgroup: () => cgroupDirs.some((d) => existsSync(d)),
            'agent socket': () => existsSync(record.agentSocket),
            'runtime state': () => existsSync(join(instanceDir, 'runc', runtimeId)),
          };
          return async () => present(checks);
        },
        async obstructRemoval(runtimeId) {
          // The disk's directory: removing it is a middle step of the teardown (after the
          // rootfs, namespace and disk are unmounted, before the cgroup and directories go).
          return immutableObstacle(join(instanceDir, 'disks', recordOf(runtimeId).diskId));
        },
      },
    };
  });
}

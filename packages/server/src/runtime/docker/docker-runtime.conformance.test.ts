import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import Docker from 'dockerode';
import { runConformanceSuite } from '../conformance/conformance-suite.js';
import { DockerRuntime } from './docker-runtime.js';
import { LOCAL_TEST_REGISTRIES } from '../../testing/local-registries.js';
import { unavailableSuite } from '../../testing/runtime-available.js';
import { TestInternet, testConnectionLog } from '../../testing/test-internet.js';
import { immutableObstacle, loopBackingFiles, mountPoints, present } from '../conformance/host-objects.js';

const IMAGE = process.env.CORRAL_TEST_IMAGE ?? 'corral-test/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');

/** Why the suite cannot run here, or undefined when dockerd and the test image are present. */
function missing(): string | undefined {
  try {
    execFileSync('docker', ['image', 'inspect', IMAGE], { stdio: 'ignore' });
    return undefined;
  } catch {
    return `no Docker engine with image ${IMAGE} (run scripts/ensure-docker.sh)`;
  }
}

const reason = missing();
if (reason !== undefined) {
  unavailableSuite('docker runtime conformance', reason);
} else {
  runConformanceSuite('docker', async () => {
    const instance = `test-${randomBytes(4).toString('hex')}`;
    const diskDir = join(CACHE, 'docker-disks', instance);
    const checkpointDir = join(CACHE, 'docker-checkpoints', instance);
    // Loop mode whatever the engine's storage driver, so it stays tested on a btrfs engine too;
    // storage-opt mode is covered by docker-runtime-btrfs.conformance.test.ts.
    const testInternet = await TestInternet.start();
    const runtime = new DockerRuntime({ instance, diskDir, checkpointDir, diskMode: 'loop', warn: () => undefined, insecureRegistries: [...LOCAL_TEST_REGISTRIES], execStartTimeoutMs: 5000, egressDnsUpstream: testInternet.dnsAddress, egressConnectionLog: testConnectionLog(join(diskDir, 'bin')) });
    return {
      runtime,
      image: IMAGE,
      testInternet,
      async cleanup() {
        for (const s of await runtime.list()) await runtime.remove(s.runtimeId);
        await runtime.close();
        await testInternet.close();
        await rm(diskDir, { recursive: true, force: true });
        // Checkpoints the cases left (they delete their own; a failed case may not have).
        const docker = new Docker();
        // Children first: a parent goes once no image builds on it.
        for (let pass = 0; pass < 5; pass++) {
          const images = await docker.listImages({ filters: { label: [`corral.checkpoint.instance=${instance}`] } });
          if (images.length === 0) break;
          for (const image of images) await docker.getImage(image.Id).remove({ force: true }).catch(() => undefined);
        }
        await rm(checkpointDir, { recursive: true, force: true });
      },
      removalFaults: {
        async trackHostObjects(runtimeId) {
          const sandboxId = runtimeId.replace(/^corral-/, '');
          const disk = join(diskDir, sandboxId);
          const etc = join(CACHE, 'docker-disks', 'docker-etc', instance, sandboxId);
          const checks: Record<string, () => boolean> = {
            container: () => {
              try {
                execFileSync('docker', ['container', 'inspect', runtimeId], { stdio: 'ignore' });
                return true;
              } catch {
                return false;
              }
            },
            'disk directory': () => existsSync(disk),
            'disk mount': () => mountPoints().has(join(disk, 'mnt')),
            'loop device': () => loopBackingFiles().some((f) => f.startsWith(`${disk}/`)),
            '/etc files': () => existsSync(etc),
          };
          return async () => present(checks);
        },
        async obstructRemoval(runtimeId) {
          // The loop disk's directory, removed after the container and the disk's unmount.
          return immutableObstacle(join(diskDir, runtimeId.replace(/^corral-/, '')));
        },
      },
    };
  });
}

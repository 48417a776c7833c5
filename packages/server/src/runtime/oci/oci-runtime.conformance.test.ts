import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { runConformanceSuite } from '../conformance/conformance-suite.js';
import { ImageStore } from './image-store.js';
import { OciRuntime } from './oci-runtime.js';
import { DEFAULT_USERNS_MAPPING, usernsUnavailable } from './userns.js';
import { ociMissing } from '../../testing/runtime-available.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const STATE_DIR = join(CACHE, 'oci-test');
/** `runc` (default) or `crun`. */
const RUNTIME = process.env.CORRAL_OCI_RUNTIME ?? 'runc';
/** `off` runs the suite without user namespaces; by default sandboxes get one where the host allows it. */
const USERNS = process.env.CORRAL_OCI_USERNS === 'off' ? null : undefined;

/** Why the suite cannot run here, or undefined when runc, root and the test registry are present. */
function missing(): string | undefined {
  return ociMissing({ runtime: RUNTIME, registryImage: IMAGE });
}

const reason = missing();
if (reason !== undefined) {
  test('oci runtime conformance', (t) => {
    if (process.env.CI === 'true') throw new Error(reason);
    t.skip(reason);
  });
} else {
  // One image store for both runtimes of the suite: the second reuses the layers the first pulled.
  const images = new ImageStore({ root: join(STATE_DIR, 'images') });
  runConformanceSuite('oci', async () => {
    const instance = `test-${randomBytes(4).toString('hex')}`;
    const runtime = new OciRuntime({ instance, stateDir: STATE_DIR, images, runtimeBinary: RUNTIME, userns: USERNS });
    const expected = USERNS === null || (await usernsUnavailable(DEFAULT_USERNS_MAPPING, join(STATE_DIR, 'images', 'tmp'))) !== undefined ? null : DEFAULT_USERNS_MAPPING;
    return {
      runtime,
      image: IMAGE,
      async cleanup() {
        assert.deepEqual(runtime.userns, expected, 'the suite ran with the user namespace setting it meant to test');
        for (const s of await runtime.list()) await runtime.remove(s.runtimeId);
        await runtime.close();
        await rm(join(STATE_DIR, 'instances', instance), { recursive: true, force: true });
      },
    };
  });
}

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { runConformanceSuite } from '../conformance/conformance-suite.js';
import { ImageStore } from './image-store.js';
import { OciRuntime } from './oci-runtime.js';
import { ensureAgentBinary } from './native-build.js';
import { DEFAULT_USERNS_MAPPING, usernsUnavailable } from './userns.js';
import { ociMissing } from '../../testing/runtime-available.js';
import { insecureRegistriesFor } from '../../testing/local-registries.js';

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
    const runtime = new OciRuntime({ instance, stateDir: STATE_DIR, images, runtimeBinary, userns: USERNS });
    const expected = USERNS === null || (await usernsUnavailable(DEFAULT_USERNS_MAPPING, join(STATE_DIR, 'images', 'tmp'), await ensureAgentBinary(join(STATE_DIR, 'bin')))) !== undefined ? null : DEFAULT_USERNS_MAPPING;
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

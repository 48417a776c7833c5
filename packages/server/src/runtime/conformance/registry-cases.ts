import assert from 'node:assert/strict';
import { it } from 'node:test';
import { RuntimeError } from '../runtime.js';
import type { SandboxSpec } from '../runtime.js';
import { makeSpec } from './conformance-suite.js';
import type { ConformanceContext } from './conformance-suite.js';
import { localRegistryAnswers } from '../../testing/local-registries.js';

/** The local registry with basic auth that scripts/start-registry.sh runs, and its private image. */
const AUTH_REGISTRY = '127.0.0.1:5001';
const PRIVATE_IMAGE = `${AUTH_REGISTRY}/private/busybox:latest`;
const GOOD_AUTH: NonNullable<SandboxSpec['registryAuth']> = { username: 'corral', password: 'corral-secret', serverAddress: AUTH_REGISTRY };

function pullFailed(pattern: RegExp) {
  return (e: unknown): boolean => e instanceof RuntimeError && e.kind === 'IMAGE_PULL_FAILED' && pattern.test(e.message);
}

/**
 * Registry cases: an image the host holds because one caller pulled it with credentials is not
 * handed to another caller the registry would refuse, and credentials go only to the registry they
 * were made for. The driver must be allowed to reach the local registries (insecureRegistries).
 */
export function registerRegistryCases(context: ConformanceContext): void {
  it('registry: a private image pulled with credentials is refused to callers without them', async (t) => {
    if (!(await localRegistryAnswers(AUTH_REGISTRY))) {
      if (process.env.CI === 'true') throw new Error(`no auth registry on ${AUTH_REGISTRY} (scripts/start-registry.sh --auth corral:corral-secret)`);
      return t.skip(`no auth registry on ${AUTH_REGISTRY}`);
    }
    const rt = context.runtime;
    const { runtimeId } = await rt.create(makeSpec(PRIVATE_IMAGE, { registryAuth: GOOD_AUTH }));
    await rt.remove(runtimeId);
    // The image is now on this host; other callers must still convince the registry.
    await assert.rejects(rt.create(makeSpec(PRIVATE_IMAGE)), pullFailed(/credentials|401|refused access/));
    await assert.rejects(rt.create(makeSpec(PRIVATE_IMAGE, { registryAuth: { ...GOOD_AUTH, password: 'wrong' } })), pullFailed(/credentials|401|refused access/));
    // Credentials made for another registry are not sent to this one.
    await assert.rejects(rt.create(makeSpec(PRIVATE_IMAGE, { registryAuth: { ...GOOD_AUTH, serverAddress: 'ghcr.io' } })), pullFailed(/not for 127\.0\.0\.1:5001/));
    // The owner of the credentials still gets it.
    const again = await rt.create(makeSpec(PRIVATE_IMAGE, { registryAuth: GOOD_AUTH }));
    await rt.remove(again.runtimeId);
  });
}

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { makeSpec, runToEnd } from '../conformance/conformance-suite.js';
import type { KubernetesRuntime } from './kubernetes-runtime.js';
import { K8S_TEST_IMAGE, kubernetesMissing, kubernetesUnavailable, testKubernetesRuntime } from '../../testing/kubernetes-available.js';

const NAMESPACE = process.env.CORRAL_K8S_NAMESPACE ?? 'corral-conformance';
const reason = await kubernetesMissing();
if (reason !== undefined) kubernetesUnavailable('kubernetes: adopting a sandbox another replica started', reason);

describe('kubernetes: adopting a sandbox another replica started', { skip: reason, timeout: 180_000 }, () => {
  it('a create of a sandbox whose Pod and Secrets an earlier attempt left replaces them and runs', async () => {
    const instance = `adopt-${randomBytes(4).toString('hex')}`;
    const make = (): KubernetesRuntime => testKubernetesRuntime({ instance, namespace: NAMESPACE });
    // Two replicas of one deployment (same instance): the first starts the sandbox and "dies"
    // (its objects stay), the second provisions the same sandbox again.
    const first = make();
    const second = make();
    await Promise.all([first.init(), second.init()]);
    const spec = makeSpec(K8S_TEST_IMAGE, { networkAccess: true, env: { WHO: 'second' } });
    try {
      const left = await first.create(spec);
      await first.close();
      const adopted = await second.create(spec);
      assert.equal(adopted.runtimeId, left.runtimeId);
      const r = await runToEnd(second, adopted.runtimeId, 'echo "$WHO"');
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, 'second\n');
    } finally {
      for (const s of await second.list()) await second.remove(s.runtimeId).catch(() => undefined);
      await second.close();
    }
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../config.js';
import { BuiltImageRegistry } from './built-image-registry.js';

describe('BuiltImageRegistry', () => {
  const registry = new BuiltImageRegistry('Registry.Internal:5000/corral-built', { username: 'u', password: 'p' });

  it('publishes corral.local/<owner>/<name>:<tag> under the prefix, and nothing else', () => {
    assert.equal(registry.host, 'registry.internal:5000');
    assert.equal(registry.publishedRef('corral.local/u1/app/web:v2'), 'registry.internal:5000/corral-built/u1/app/web:v2');
    assert.equal(registry.publishedRef('corral.local/team-t1/app'), 'registry.internal:5000/corral-built/team-t1/app:latest');
    assert.throws(() => registry.publishedRef('docker.io/library/busybox:latest'), /not a built image/);
  });

  it('refuses references under the prefix path on any registry host; others pass', () => {
    for (const reference of [
      'registry.internal:5000/corral-built/u1/app:v1',
      'REGISTRY.internal:5000/corral-built/u1/app@sha256:' + 'a'.repeat(64),
      '10.0.0.5:5000/corral-built/u1/app:v1',
      'localhost:5000/corral-built/u1/app',
      'corral-built/app',
      'registry.internal:5000/corral-built:v1',
    ]) {
      assert.match(registry.refusal(reference) ?? '', /publishes built images/, reference);
    }
    for (const reference of ['registry.internal:5000/corral-built-other/app:v1', 'registry.internal:5000/x/corral-built/app', 'busybox', 'corral.local/u1/app:v1', 'not a reference']) {
      assert.equal(registry.refusal(reference), undefined, reference);
    }
  });

  it('CORRAL_K8S_IMAGE_REGISTRY is host[:port]/prefix, its credentials set together', () => {
    assert.equal(loadConfig({ env: { CORRAL_K8S_IMAGE_REGISTRY: 'Reg.example:5000/corral-built/v1/' } }).k8sImageRegistry, 'reg.example:5000/corral-built/v1');
    assert.equal(loadConfig({ env: {} }).k8sImageRegistry, null);
    for (const bad of ['reg.example:5000', 'reg.example:5000/', '/corral', 'reg.example/Upper', 'reg example/x', 'https://reg.example/x']) {
      assert.throws(() => loadConfig({ env: { CORRAL_K8S_IMAGE_REGISTRY: bad } }), /CORRAL_K8S_IMAGE_REGISTRY must be/, bad);
    }
    assert.throws(() => loadConfig({ env: { CORRAL_K8S_IMAGE_REGISTRY: 'reg.example/x', CORRAL_K8S_IMAGE_REGISTRY_USERNAME: 'u' } }), /set together/);
    const both = loadConfig({ env: { CORRAL_K8S_IMAGE_REGISTRY: 'reg.example/x', CORRAL_K8S_IMAGE_REGISTRY_USERNAME: 'u', CORRAL_K8S_IMAGE_REGISTRY_PASSWORD: 'p' } });
    assert.deepEqual([both.k8sImageRegistryUsername, both.k8sImageRegistryPassword], ['u', 'p']);
  });
});

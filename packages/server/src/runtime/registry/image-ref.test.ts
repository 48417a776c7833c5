import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeRegistryHost, parseImageRef, registryEndpoint } from './image-ref.js';

describe('image references', () => {
  it('parses like Docker', () => {
    assert.equal(parseImageRef('busybox').canonical, 'docker.io/library/busybox:latest');
    assert.equal(parseImageRef('corral-test/x:nope').canonical, 'docker.io/corral-test/x:nope');
    assert.equal(parseImageRef('127.0.0.1:5000/corral/busybox:latest').registry, '127.0.0.1:5000');
    assert.equal(parseImageRef('localhost/a').registry, 'localhost');
    const pinned = parseImageRef(`ghcr.io/o/r@sha256:${'a'.repeat(64)}`);
    assert.equal(pinned.digest, `sha256:${'a'.repeat(64)}`);
    assert.throws(() => parseImageRef('UPPER/case'));
  });

  it('keeps the name as written, which the Docker engine takes as the repository', () => {
    assert.deepEqual(
      [parseImageRef('python:3.11-slim'), parseImageRef('127.0.0.1:5000/corral/busybox:latest'), parseImageRef('busybox')].map((r) => [r.name, r.tag]),
      [
        ['python', '3.11-slim'],
        ['127.0.0.1:5000/corral/busybox', 'latest'],
        ['busybox', 'latest'],
      ],
    );
    assert.equal(parseImageRef(`ghcr.io/o/r@sha256:${'b'.repeat(64)}`).name, 'ghcr.io/o/r');
  });

  it('names registry hosts the way credentials and clients need them', () => {
    assert.equal(registryEndpoint('docker.io'), 'registry-1.docker.io');
    assert.equal(registryEndpoint('127.0.0.1:5000'), '127.0.0.1:5000');
    assert.equal(normalizeRegistryHost('https://index.docker.io/v1/'), 'docker.io');
    assert.equal(normalizeRegistryHost('GHCR.io/'), 'ghcr.io');
  });
});

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import Docker from 'dockerode';
import { pullImage } from '../runtime/docker/docker-images.js';
import { pushRootfsImage } from './push-kind.js';
import { startLocalRegistry } from './registry.js';
import type { LocalRegistry } from './registry.js';
import { absent, missingComponents, removeImages, runInImage } from './test-support.js';

const docker = new Docker();
const missing = await missingComponents(['busybox', 'umoci', 'skopeo', 'docker-registry', 'htpasswd'], true);
const credentials = { username: 'corral', password: `pw-${process.pid}` };

describe('pulls from a real local registry', { concurrency: false }, () => {
  const registries: LocalRegistry[] = [];
  const refs: string[] = [];
  after(async () => {
    if (missing === undefined) await removeImages(docker, refs);
    for (const registry of registries) await registry.stop();
  });

  test('an image pushed with skopeo to 127.0.0.1 is pulled back through dockerode and runs', async (t) => {
    if (absent(t, missing)) return;
    const registry = await startLocalRegistry();
    registries.push(registry);
    const ref = `${registry.endpoint}/corral/busybox:latest`;
    refs.push(ref);
    await pushRootfsImage('busybox', `docker://${ref}`);
    const catalog = (await (await fetch(`http://${registry.endpoint}/v2/_catalog`)).json()) as { repositories: string[] };
    assert.deepEqual(catalog.repositories, ['corral/busybox']);
    await removeImages(docker, [ref]);
    await pullImage(ref);
    const run = await runInImage(docker, ref, ['echo', 'hi']);
    assert.equal(run.output.trim(), 'hi');
  });

  test('an htpasswd registry refuses a pull without or with wrong credentials and serves one with them', async (t) => {
    if (absent(t, missing)) return;
    const registry = await startLocalRegistry({ credentials });
    registries.push(registry);
    assert.equal((await fetch(`http://${registry.endpoint}/v2/`)).status, 401);
    const basic = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    assert.equal((await fetch(`http://${registry.endpoint}/v2/`, { headers: { authorization: basic } })).status, 200);

    const ref = `${registry.endpoint}/private/busybox:latest`;
    refs.push(ref);
    await assert.rejects(pushRootfsImage('busybox', `docker://${ref}`), /unauthorized|authentication required|401/i);
    await pushRootfsImage('busybox', `docker://${ref}`, { credentials });

    await assert.rejects(pullImage(ref), /no basic auth credentials|unauthorized|401/i);
    await assert.rejects(pullImage(ref, { credentials: { ...credentials, password: 'wrong' } }), /unauthorized|authentication required|401/i);
    await assert.rejects(docker.getImage(ref).inspect(), (error: { statusCode?: number }) => error.statusCode === 404);
    await pullImage(ref, { credentials });
    const run = await runInImage(docker, ref, ['sh', '-c', 'echo private-ok']);
    assert.equal(run.output.trim(), 'private-ok');
  });
});

/**
 * Image builds on the kubernetes driver, through the API against the test cluster: with
 * CORRAL_K8S_IMAGE_REGISTRY a multi-stage Dockerfile builds on the server's host (buildah, RUN
 * steps in a user namespace) and is pushed to the local registry; a sandbox of
 * `corral.local/<owner>/<name>:<tag>` pulls it from there and runs what it built; another user's
 * create of it is 404, a direct reference to the registry's prefix 422; without the setting
 * builds are 501 naming it. A registry that wants credentials gets them, and so does the Pod (its pull Secret).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../config.js';
import { kubernetesImageBuilds } from '../runtime/kubernetes/kubernetes-image-builds.js';
import type { KubernetesRuntime } from '../runtime/kubernetes/kubernetes-runtime.js';
import { imageBuildMissing } from '../testing/image-build-server.js';
import { K8S_TEST_IMAGE, kubernetesMissing, kubernetesUnavailable, testKubernetesRuntime } from '../testing/kubernetes-available.js';
import { LOCAL_TEST_REGISTRIES, localRegistryAnswers } from '../testing/local-registries.js';
import { eventually } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

const NAMESPACE = process.env.CORRAL_K8S_NAMESPACE ?? 'corral-conformance';
const REGISTRY = '127.0.0.1:5000';
const NAME = 'kubernetes image builds through the API';

const reason = (await kubernetesMissing()) ?? imageBuildMissing('oci') ?? ((await localRegistryAnswers(REGISTRY)) ? undefined : `no registry at ${REGISTRY}`);
if (reason !== undefined) kubernetesUnavailable(NAME, reason);

interface ErrorBody {
  code: string;
  detail: string;
}

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

describe(NAME, { skip: reason, timeout: 600_000 }, () => {
  const prefix = `corral-test-built/${randomBytes(4).toString('hex')}`;
  let t: TestServer;
  let runtime: KubernetesRuntime;
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };
  const scratch = mkdtempSync(join(tmpdir(), 'corral-k8s-build-'));

  before(async () => {
    const dataDir = join(scratch, 'data');
    mkdirSync(dataDir);
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir,
        registryInsecure: [...LOCAL_TEST_REGISTRIES],
        k8sImageRegistry: `${REGISTRY}/${prefix}`,
        imageBuildCpus: 0.5,
        imageBuildMemoryMb: 512,
        imageBuildTimeoutSeconds: 300,
      },
    });
    const imageBuilds = kubernetesImageBuilds(config);
    assert.ok(imageBuilds, 'CORRAL_K8S_IMAGE_REGISTRY set: the driver builds');
    runtime = testKubernetesRuntime({ instance: `k8sib-${randomBytes(4).toString('hex')}`, namespace: NAMESPACE, imageBuilds });
    await runtime.init();
    t = await startTestServer({ runtime: 'kubernetes', dataDir, reconcileIntervalMs: 1000, k8sImageRegistry: `${REGISTRY}/${prefix}` }, {}, { runtime });
    alice = await t.createUser('alice');
    bob = await t.createUser('bob');
  });
  after(async () => {
    if (t) {
      const images = (await t.request('GET', '/api/v1/images', { key: alice.key })).json<{ data: { imageName: string; imageTag: string }[] }>().data;
      for (const i of images) await t.request('DELETE', `/api/v1/images/${i.imageName}/${i.imageTag}`, { key: alice.key });
      for (const s of await runtime.list()) await runtime.remove(s.runtimeId).catch(() => undefined);
      await t.close();
    }
    await runtime?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('builds a multi-stage Dockerfile, publishes it, and runs it in its owner\'s sandbox; others get 404, the registry path 422', async () => {
    const context = join(scratch, 'ctx');
    mkdirSync(context);
    writeFileSync(join(context, 'app.sh'), '#!/bin/sh\necho app-ran\n');
    writeFileSync(
      join(context, 'Dockerfile'),
      [
        `FROM ${K8S_TEST_IMAGE} AS builder`,
        'WORKDIR /src',
        'COPY app.sh ./',
        // What the RUN step saw as its id mapping: a user namespace (root is not host root).
        'RUN chmod +x app.sh && head -1 /proc/self/uid_map | tr -s " " > uidmap.txt',
        `FROM ${K8S_TEST_IMAGE}`,
        'COPY --from=builder /src /app',
        // A file of the base deleted: a whiteout that must survive the push and the kubelet's pull.
        'RUN rm /bin/vi && mkdir /data && echo kept > /data/f',
        'CMD ["sh"]',
        '',
      ].join('\n'),
    );
    const tarball = join(scratch, 'ctx.tar.gz');
    execFileSync('tar', ['-czf', tarball, '-C', context, '.']);
    const init = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { image_name: 'hello', image_tag: 'v1' } });
    assert.equal(init.statusCode, 201, init.body);
    const { build_id: id, upload_url: url } = init.json<{ build_id: string; upload_url: string }>();
    const put = await t.server.app.inject({ method: 'PUT', url: url.replace(/^https?:\/\/[^/]+/, ''), payload: readFileSync(tarball), headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(put.statusCode, 200, put.body);
    const start = await t.request('POST', `/api/v1/images/build/${id}/start`, { key: alice.key, body: { context_uploaded: true } });
    assert.equal(start.statusCode, 200, start.body);
    const done = await eventually(async () => {
      const status = (await t.request('GET', `/api/v1/images/build/${id}`, { key: alice.key })).json<{ status: string; errorMessage: string | null; fullImagePath: string }>();
      return ['COMPLETED', 'FAILED'].includes(status.status) ? status : undefined;
    }, 400_000, 'the build');
    assert.equal(done.status, 'COMPLETED', done.errorMessage ?? '');
    assert.equal(done.fullImagePath, `corral.local/${alice.id}/hello:v1`);
    const logs = await t.request('GET', `/api/v1/images/build/${id}/logs`, { key: alice.key });
    assert.match(logs.body, new RegExp(`pushed ${REGISTRY}/${prefix}/${alice.id}/hello:v1`));

    // The registry holds it under the prefix.
    const tags = (await (await fetch(`http://${REGISTRY}/v2/${prefix}/${alice.id}/hello/tags/list`)).json()) as { tags?: string[] };
    assert.deepEqual(tags.tags, ['v1']);

    // Alice's sandbox of the built image pulls it from the registry and runs what it built.
    const created = await t.request('POST', '/api/v1/sandbox', { key: alice.key, body: { name: 'built', docker_image: done.fullImagePath } });
    assert.equal(created.statusCode, 201, created.body);
    const sandboxId = created.json<{ id: string }>().id;
    const sandbox = await eventually(async () => {
      const s = (await t.request('GET', `/api/v1/sandbox/${sandboxId}`, { key: alice.key })).json<{ status: string; errorMessage: string | null }>();
      return ['RUNNING', 'ERROR'].includes(s.status) ? s : undefined;
    }, 180_000, 'RUNNING');
    assert.equal(sandbox.status, 'RUNNING', sandbox.errorMessage ?? '');
    const row = await t.server.store.getSandbox(sandboxId);
    const exec = await runtime.exec(row?.runtimeId ?? '', { argv: ['/bin/sh', '-c', '/app/app.sh; cat /app/uidmap.txt; cat /data/f; test -e /bin/vi && echo vi-present || echo vi-gone'] });
    exec.stderr.resume();
    const [out, exit] = await Promise.all([collect(exec.stdout), exec.wait()]);
    assert.equal(exit.exitCode, 0, out);
    const [ran, uidmap, kept, vi] = out.trim().split('\n');
    assert.equal(ran, 'app-ran');
    assert.match(uidmap ?? '', /^ ?0 \d+ \d+$/);
    assert.notEqual(uidmap?.trim().split(' ')[1], '0', `the RUN step ran as host root: ${uidmap}`);
    assert.equal(kept, 'kept');
    assert.equal(vi, 'vi-gone');
    assert.equal((await t.request('DELETE', `/api/v1/sandbox/${sandboxId}`, { key: alice.key })).statusCode, 200);

    // Bob may not use it, by its name or by where it is published (under any name of the registry).
    const bobs = await t.request('POST', '/api/v1/sandbox', { key: bob.key, body: { name: 'theirs', docker_image: done.fullImagePath } });
    assert.equal(bobs.statusCode, 404, bobs.body);
    assert.equal(bobs.json<ErrorBody>().code, 'IMAGE_NOT_FOUND');
    for (const direct of [`${REGISTRY}/${prefix}/${alice.id}/hello:v1`, `localhost:5000/${prefix}/${alice.id}/hello:v1`]) {
      const refused = await t.request('POST', '/api/v1/sandbox', { key: bob.key, body: { name: 'direct', docker_image: direct } });
      assert.equal(refused.statusCode, 422, refused.body);
      assert.equal(refused.json<ErrorBody>().code, 'VALIDATION_FAILED');
      assert.match(refused.json<ErrorBody>().detail, /publishes built images/);
    }
    const transfer = await t.request('POST', '/api/v1/images/build', { key: bob.key, body: { source_image: `${REGISTRY}/${prefix}/${alice.id}/hello:v1` } });
    assert.equal(transfer.statusCode, 422, transfer.body);
    assert.match(transfer.json<ErrorBody>().detail, /publishes built images/);
    assert.equal((await t.request('GET', '/api/v1/sandbox', { key: bob.key })).json<{ total: number }>().total, 0, 'nothing was created for bob');
  });

  it('publishes to a registry that wants credentials (CORRAL_K8S_IMAGE_REGISTRY_USERNAME/_PASSWORD), which the Pod pulls with as its pull Secret', async () => {
    const authPrefix = `corral-test-built/${randomBytes(4).toString('hex')}`;
    const dataDir = join(scratch, 'data-auth');
    mkdirSync(dataDir);
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir,
        registryInsecure: [...LOCAL_TEST_REGISTRIES],
        k8sImageRegistry: `127.0.0.1:5001/${authPrefix}`,
        k8sImageRegistryUsername: 'corral',
        k8sImageRegistryPassword: 'corral-secret',
      },
    });
    const imageBuilds = kubernetesImageBuilds(config);
    assert.ok(imageBuilds);
    const authRuntime = testKubernetesRuntime({ instance: `k8sib-${randomBytes(4).toString('hex')}`, namespace: NAMESPACE, imageBuilds });
    await authRuntime.init();
    const s = await startTestServer({ runtime: 'kubernetes', dataDir, reconcileIntervalMs: 1000 }, {}, { runtime: authRuntime });
    try {
      // A transfer is published like a build.
      const transfer = await s.request('POST', '/api/v1/images/build', { body: { source_image: K8S_TEST_IMAGE, image_name: 'copied', image_tag: 'v1' } });
      assert.equal(transfer.statusCode, 201, transfer.body);
      const { build_id: id, fullImagePath } = transfer.json<{ build_id: string; fullImagePath: string }>();
      const done = await eventually(async () => {
        const status = (await s.request('GET', `/api/v1/images/build/${id}`)).json<{ status: string; errorMessage: string | null }>();
        return ['COMPLETED', 'FAILED'].includes(status.status) ? status : undefined;
      }, 300_000, 'the transfer');
      assert.equal(done.status, 'COMPLETED', done.errorMessage ?? '');
      const anonymous = await fetch(`http://127.0.0.1:5001/v2/${authPrefix}/${fullImagePath.split('/')[1]}/copied/tags/list`);
      assert.equal(anonymous.status, 401, 'the registry wants credentials');
      const created = await s.request('POST', '/api/v1/sandbox', { body: { name: 'copied', docker_image: fullImagePath } });
      assert.equal(created.statusCode, 201, created.body);
      const sandboxId = created.json<{ id: string }>().id;
      const sandbox = await eventually(async () => {
        const got = (await s.request('GET', `/api/v1/sandbox/${sandboxId}`)).json<{ status: string; errorMessage: string | null }>();
        return ['RUNNING', 'ERROR'].includes(got.status) ? got : undefined;
      }, 180_000, 'RUNNING');
      assert.equal(sandbox.status, 'RUNNING', sandbox.errorMessage ?? '');
      const row = await s.server.store.getSandbox(sandboxId);
      const exec = await authRuntime.exec(row?.runtimeId ?? '', { argv: ['/bin/sh', '-c', 'echo copied-ran'] });
      exec.stderr.resume();
      const [out] = await Promise.all([collect(exec.stdout), exec.wait()]);
      assert.equal(out.trim(), 'copied-ran');
    } finally {
      for (const x of await authRuntime.list()) await authRuntime.remove(x.runtimeId).catch(() => undefined);
      await s.close();
      await authRuntime.close();
    }
  });

  it('without CORRAL_K8S_IMAGE_REGISTRY the kubernetes driver has no builds: 501 naming the setting', async () => {
    const bare = testKubernetesRuntime({ instance: `k8sib-${randomBytes(4).toString('hex')}`, namespace: NAMESPACE });
    await bare.init();
    const s = await startTestServer({ runtime: 'kubernetes', reconcileIntervalMs: 60_000 }, {}, { runtime: bare });
    try {
      const response = await s.request('POST', '/api/v1/images/build', { body: { image_name: 'x', image_tag: 'v1' } });
      assert.equal(response.statusCode, 501, response.body);
      assert.match(response.json<ErrorBody>().detail, /CORRAL_K8S_IMAGE_REGISTRY/);
    } finally {
      await s.close();
      await bare.close();
    }
  });
});

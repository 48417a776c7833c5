/**
 * `client.images`: a Dockerfile build through the SDK against a real server with real buildah (the
 * oci driver), and the error paths (a failing step, a missing context or Dockerfile, an oversize
 * context, an expired upload URL, a server that cannot build) with a stand-in builder.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  GatedRuntime,
  ImageBuildError,
  type ImageBuilder,
  type ImageTransferRequest,
  type ImageBuildRequest,
  type ImageBuildResult,
  type ListeningTestServer,
  imageBuildMissing,
  needNothingMissing,
  startImageBuildServer,
  startTestServer,
} from '@corral/server/testing';
import { PACKED_DOCKERFILE_PATH, packBuildContext } from './build-context.js';
import { CorralClient } from './client.js';
import { BuildContextError, CorralError, ImageBuildFailedError, NotFoundError, NotImplementedError } from './errors.js';
import { Sandbox } from './sandbox.js';
import { startServer } from './testing/sdk-test-support.js';

const scratch = mkdtempSync(join(tmpdir(), 'corral-sdk-images-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Writes `files` under a new directory; returns it. */
function contextDir(name: string, files: Record<string, string>): string {
  const dir = join(scratch, name);
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), text);
  }
  return dir;
}

describe('packBuildContext', () => {
  it('honours .dockerignore (Docker rules) but always keeps the Dockerfile and .dockerignore', async () => {
    const dir = contextDir('ignore', {
      Dockerfile: 'FROM busybox\n',
      '.dockerignore': 'node_modules\n*.log\nDockerfile\nsecret/**\n!secret/keep.txt\n',
      'app.py': 'print(1)\n',
      'root.log': 'x',
      'sub/nested.log': 'kept: *.log matches at the root only',
      'node_modules/pkg/index.js': 'x',
      'secret/key.pem': 'x',
      'secret/keep.txt': 'x',
    });
    const packed = await packBuildContext(dir);
    try {
      assert.equal(packed.dockerfilePath, 'Dockerfile');
      const names = execFileSync('tar', ['-tzf', packed.file]).toString().trim().split('\n').sort();
      assert.deepEqual(names, ['.dockerignore', 'Dockerfile', 'app.py', 'secret/', 'secret/keep.txt', 'sub/', 'sub/nested.log']);
    } finally {
      await packed.dispose();
    }
  });

  it('adds a Dockerfile outside the context under its own name', async () => {
    const dir = contextDir('outside', { 'app.txt': 'a' });
    const dockerfile = join(contextDir('outside-df', { 'build.Dockerfile': 'FROM busybox\n' }), 'build.Dockerfile');
    const packed = await packBuildContext(dir, dockerfile);
    try {
      assert.equal(packed.dockerfilePath, PACKED_DOCKERFILE_PATH);
      assert.equal(execFileSync('tar', ['-xOzf', packed.file, PACKED_DOCKERFILE_PATH]).toString(), 'FROM busybox\n');
    } finally {
      await packed.dispose();
    }
  });

  it('refuses a missing context or Dockerfile with a message that says what to do', async () => {
    await assert.rejects(packBuildContext(join(scratch, 'nope')), (error: unknown) => {
      assert.ok(error instanceof BuildContextError);
      assert.match(error.message, /does not exist\. Pass the directory/);
      return true;
    });
    const empty = contextDir('no-dockerfile', { 'a.txt': 'a' });
    await assert.rejects(packBuildContext(empty), /There is no Dockerfile in .*name it with -f/);
    await assert.rejects(packBuildContext(empty, join(empty, 'missing.Dockerfile')), /does not exist or is not a file/);
  });
});

/** Builds nothing: fails when the Dockerfile path says so, and otherwise "builds" with some output. */
class StubBuilder implements ImageBuilder {
  unavailable(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }
  async build(request: ImageBuildRequest): Promise<ImageBuildResult> {
    request.onOutput('STEP 1/2: FROM busybox\n');
    await new Promise((resolve) => setTimeout(resolve, 50));
    request.onOutput('STEP 2/2: RUN make\nmake: *** no rule\n');
    if (request.dockerfilePath === 'fail.Dockerfile') throw new ImageBuildError('the build failed (buildah exit 1) at STEP 2/2: RUN make', 'STEP 2/2: RUN make', 'make: *** no rule\n');
    return { reference: request.reference, digest: `sha256:${'0'.repeat(64)}`, sizeBytes: 10 };
  }
  transfer(request: ImageTransferRequest): Promise<ImageBuildResult> {
    return Promise.resolve({ reference: request.reference, digest: `sha256:${'1'.repeat(64)}`, sizeBytes: 10 });
  }
  rename(): Promise<string> {
    return Promise.resolve(`sha256:${'0'.repeat(64)}`);
  }
  remove(): Promise<void> {
    return Promise.resolve();
  }
}

class BuildingRuntime extends GatedRuntime {
  readonly imageBuilder = new StubBuilder();
}

describe('client.images error paths (stand-in builder)', { timeout: 60_000 }, () => {
  let url: string;
  let close: () => Promise<void>;
  let key: string;
  before(async () => {
    const t = await startTestServer({ imageBuildContextMaxBytes: 2048, imageBuildUploadTtlSeconds: 10 }, {}, { runtime: new BuildingRuntime() });
    url = await t.server.listen();
    close = () => t.close();
    key = (await t.createUser('img-errors')).key;
  });
  after(async () => close?.());

  it('a failing step is an ImageBuildFailedError with the step and the error text; the log came through onLog once', async () => {
    const client = new CorralClient({ apiUrl: url, apiKey: key });
    const dir = contextDir('fails', { 'fail.Dockerfile': 'FROM busybox\nRUN make\n' });
    let log = '';
    await assert.rejects(client.images.build({ context: dir, dockerfile: join(dir, 'fail.Dockerfile'), name: 'broken', tag: 'v1', onLog: (text) => (log += text) }), (error: unknown) => {
      assert.ok(error instanceof ImageBuildFailedError, String(error));
      assert.equal(error.failedStep, 'STEP 2/2: RUN make');
      assert.equal(error.buildStatus, 'FAILED');
      assert.match(error.errorMessage ?? '', /make: \*\*\* no rule/);
      assert.match(error.message, /ended FAILED at STEP 2\/2: RUN make\. Fix that step/);
      assert.match(error.message, new RegExp(`client\\.images\\.logs\\('${error.buildId}'\\)`));
      return true;
    });
    assert.equal(log, 'STEP 1/2: FROM busybox\nSTEP 2/2: RUN make\nmake: *** no rule\n');
  });

  it('a build that succeeds returns its reference; list, get, logs and delete', async () => {
    const client = new CorralClient({ apiUrl: url, apiKey: key });
    const image = await client.images.build({ context: contextDir('ok', { Dockerfile: 'FROM busybox\n' }), name: 'fine', tag: 'v2' });
    assert.match(image, /^corral\.local\/[^/]+\/fine:v2$/);
    const rows = (await client.images.list()).data;
    assert.deepEqual(rows.map((r) => `${r.imageName}:${r.imageTag}:${r.status}`), ['fine:v2:COMPLETED']);
    const builds = (await client.images.builds()).data;
    const ok = builds.find((b) => b.imageName === 'fine');
    assert.ok(ok);
    assert.equal((await client.images.get(ok.id)).fullImagePath, image);
    assert.match((await client.images.logs(ok.id)).logs, /STEP 2\/2/);
    await client.images.delete('fine', 'v2');
    assert.deepEqual((await client.images.list()).data, []);
    await assert.rejects(client.images.delete('fine', 'v2'), NotFoundError);
  });

  it('a context over the server limit says to use .dockerignore', async () => {
    const client = new CorralClient({ apiUrl: url, apiKey: key });
    // Random bytes do not compress: the packed context stays over the 2 KiB cap.
    const dir = contextDir('big', { Dockerfile: 'FROM busybox\n' });
    writeFileSync(join(dir, 'blob.bin'), Buffer.from(Array.from({ length: 8192 }, () => Math.floor(Math.random() * 256))));
    await assert.rejects(client.images.build({ context: dir, name: 'big', tag: 'v1' }), (error: unknown) => {
      assert.ok(error instanceof CorralError);
      assert.equal(error.status, 413);
      assert.match(error.message, /over the server's limit.*\.dockerignore/);
      return true;
    });
  });

  it('an upload URL the server refuses says to build again', async () => {
    // The upload URL's signature altered in flight.
    const client = new CorralClient({
      apiUrl: url,
      apiKey: key,
      fetch: (input, init) => fetch(String(input).includes('/context?') ? String(input).replace(/signature=[^&]+/, 'signature=00') : input, init),
    });
    await assert.rejects(client.images.build({ context: contextDir('badsig', { Dockerfile: 'FROM busybox\n' }), name: 'badsig', tag: 'v1' }), (error: unknown) => {
      assert.ok(error instanceof CorralError);
      assert.equal(error.code, 'UPLOAD_URL_INVALID');
      assert.match(error.message, /Build again/);
      return true;
    });
  });

  it('an unknown build id is NotFoundError', async () => {
    const client = new CorralClient({ apiUrl: url, apiKey: key });
    await assert.rejects(client.images.get('nope'), NotFoundError);
    await assert.rejects(client.images.logs('nope'), NotFoundError);
  });
});

describe('client.images on a server that cannot build', { timeout: 60_000 }, () => {
  it('is NotImplementedError naming the oci driver', async () => {
    const server = await startServer({ runtime: 'none' });
    try {
      const client = new CorralClient({ apiUrl: server.url, apiKey: server.t.adminKey });
      await assert.rejects(client.images.build({ context: contextDir('none', { Dockerfile: 'FROM busybox\n' }), name: 'x', tag: 'v1' }), (error: unknown) => {
        assert.ok(error instanceof NotImplementedError);
        assert.match(error.message, /CORRAL_RUNTIME=oci/);
        return true;
      });
    } finally {
      await server.close();
    }
  });
});

describe('client.images with real buildah (oci driver)', { timeout: 600_000 }, () => {
  let server: ListeningTestServer | undefined;
  const missing = imageBuildMissing();
  before(async () => {
    if (missing === undefined) server = await startImageBuildServer('sdk-img', { imageBuildMemoryMb: 512, imageBuildCpus: 1 });
  });
  after(async () => server?.close());

  it('builds a multi-stage context (honouring .dockerignore) whose image a sandbox runs; a failing RUN names its step', async (t) => {
    if (!needNothingMissing(t, missing) || !server) return;
    const user = await server.t.createUser('sdk-builder');
    const client = new CorralClient({ apiUrl: server.url, apiKey: user.key });
    const dir = contextDir('real', {
      Dockerfile: [
        'FROM busybox AS build',
        'WORKDIR /src',
        'COPY . .',
        'RUN ls -A /src | sort | tr "\\n" " " > /tmp/listing && mv /tmp/listing /src/listing && sh ./make.sh > /src/out.txt',
        'FROM busybox',
        'COPY --from=build /src/out.txt /src/listing /app/',
        'CMD ["sh"]',
        '',
      ].join('\n'),
      '.dockerignore': 'ignored.txt\n',
      'ignored.txt': 'must not reach the build',
      'make.sh': 'echo built-by-sdk\n',
    });
    let log = '';
    const image = await client.images.build({ context: dir, name: 'sdkapp', tag: 'v1', onLog: (text) => (log += text) });
    assert.equal(image, `corral.local/${user.id}/sdkapp:v1`);
    assert.match(log, /STEP \d+\/\d+: COPY --from=build/);
    // Each piece of output once: the first STEP line appears exactly once.
    // (buildah is given the image names written in full: docs/images.md.)
    assert.equal(log.match(/STEP 1\/\d+: FROM docker\.io\/library\/busybox:latest AS build/g)?.length, 1, log);

    const sandbox = await Sandbox.create(client, { image, name: 'sdk-built' });
    try {
      await sandbox.waitUntilRunning({ timeoutMs: 120_000 });
      const result = await sandbox.exec('cat /app/out.txt; cat /app/listing');
      assert.equal(result.stdout, 'built-by-sdk\n.dockerignore Dockerfile make.sh ');
    } finally {
      await sandbox.delete();
    }

    const failing = contextDir('real-fail', { Dockerfile: 'FROM busybox\nRUN echo before-failure && exit 3\n' });
    await assert.rejects(client.images.build({ context: failing, name: 'sdkfail', tag: 'v1' }), (error: unknown) => {
      assert.ok(error instanceof ImageBuildFailedError, String(error));
      assert.match(error.failedStep ?? '', /STEP 2\/2: RUN echo before-failure && exit 3/);
      assert.match(error.errorMessage ?? '', /before-failure/);
      return true;
    });
  });
});

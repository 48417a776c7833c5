/**
 * The images API's validation, signed upload URL, queue and visibility rules, through
 * `fastify.inject()` with a stand-in builder (no buildah): image-build.test.ts builds for real.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ImageBuilder, ImageBuildRequest, ImageBuildResult, ImageTransferRequest } from '../runtime/image-builder.js';
import { ImageBuildError } from '../runtime/image-builder.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import { eventually } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

/** Builds nothing: records requests, fails when the context says FAIL, and can be held. */
class StubBuilder implements ImageBuilder {
  readonly requests: ImageBuildRequest[] = [];
  running = 0;
  maxRunning = 0;
  hold: Promise<void> = Promise.resolve();
  unavailable(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }
  async build(request: ImageBuildRequest): Promise<ImageBuildResult> {
    this.requests.push(request);
    this.running += 1;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      await this.hold;
      request.onOutput('STEP 1/1: RUN false\n');
      if (request.dockerfilePath === 'fail.Dockerfile') throw new ImageBuildError('the build failed at STEP 1/1: RUN false', 'STEP 1/1: RUN false', 'boom output');
      if (!(await request.mayUseBase('corral.local/someone-else/secret:v1'))) request.onOutput('base refused\n');
      return { reference: request.reference, digest: 'sha256:' + '0'.repeat(64), sizeBytes: 1234 };
    } finally {
      this.running -= 1;
    }
  }
  readonly transfers: ImageTransferRequest[] = [];
  readonly renames: [string, string][] = [];
  transfer(request: ImageTransferRequest): Promise<ImageBuildResult> {
    this.transfers.push(request);
    if (request.source.includes('refused')) return Promise.reject(new ImageBuildError('the registry did not give it: the registry refused access', null, ''));
    return Promise.resolve({ reference: request.reference, digest: 'sha256:' + '1'.repeat(64), sizeBytes: 99 });
  }
  rename(from: string, to: string): Promise<string> {
    this.renames.push([from, to]);
    return Promise.resolve('sha256:' + '2'.repeat(64));
  }
  remove(): Promise<void> {
    return Promise.resolve();
  }
}

class BuildingRuntime extends GatedRuntime {
  readonly imageBuilder = new StubBuilder();
}

interface Initiated {
  build_id: string;
  upload_url: string;
  expires_in: number;
  fullImagePath: string;
}

describe('images API (stand-in builder)', () => {
  let t: TestServer;
  let runtime: BuildingRuntime;
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };

  before(async () => {
    runtime = new BuildingRuntime();
    t = await startTestServer({ imageBuildContextMaxBytes: 4096, imageBuildConcurrency: 1 }, {}, { runtime });
    alice = await t.createUser('alice');
    bob = await t.createUser('bob');
  });
  after(async () => t.close());

  const initiate = async (key: string, body: Record<string, unknown> = {}): Promise<Initiated> => {
    const response = await t.request('POST', '/api/v1/images/build', { key, body: { image_name: 'app', image_tag: 'v1', ...body } });
    assert.equal(response.statusCode, 201, response.body);
    return response.json<Initiated>();
  };
  const upload = (url: string, payload: string, headers: Record<string, string> = {}) =>
    t.server.app.inject({ method: 'PUT', url: url.replace(/^https?:\/\/[^/]+/, ''), payload, headers: { 'content-type': 'application/octet-stream', ...headers } });
  const waitFor = (key: string, id: string, statuses: string[]) =>
    eventually(async () => {
      const body = (await t.request('GET', `/api/v1/images/build/${id}`, { key })).json<{ status: string; errorMessage: string | null; failedStep: string | null }>();
      return statuses.includes(body.status) ? body : undefined;
    }, 20_000, statuses.join('|'));

  it('refuses bad names, tags, paths and platforms with 422 naming the field', async () => {
    for (const [body, param] of [
      [{ image_name: 'Bad Name' }, 'image_name'],
      [{ image_tag: '-x' }, 'image_tag'],
      [{ dockerfile_path: '../Dockerfile' }, 'dockerfile_path'],
      [{ dockerfile_path: '/etc/passwd' }, 'dockerfile_path'],
      [{ platform: 'linux/arm64' }, 'platform'],
    ] as [Record<string, string>, string][]) {
      const response = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { image_name: 'app', image_tag: 'v1', ...body } });
      assert.equal(response.statusCode, 422, response.body);
      assert.equal(response.json<{ errors: { param: string }[] }>().errors[0]?.param, param);
    }
    const transfer = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { source_image: 'Not A Ref!' } });
    assert.equal(transfer.statusCode, 422, transfer.body);
    assert.equal(transfer.json<{ errors: { param: string }[] }>().errors[0]?.param, 'source_image');
    const named = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { source_image: 'a:1,b:2', image_name: 'x' } });
    assert.equal(named.statusCode, 422, named.body);
    const team = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { image_name: 'a', image_tag: 'b', team_id: 'not-my-team' } });
    assert.equal(team.statusCode, 403, team.body);
  });

  it('answers 404 for builds and images that are not the caller\'s', async () => {
    const unknown = await t.request('GET', '/api/v1/images/build/nosuchbuild', { key: alice.key });
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json<{ code: string }>().code, 'IMAGE_BUILD_NOT_FOUND');
    const deleted = await t.request('DELETE', '/api/v1/images/app/nosuch', { key: alice.key });
    assert.equal(deleted.statusCode, 404);
    assert.equal(deleted.json<{ code: string }>().code, 'IMAGE_NOT_FOUND');
  });

  it('refuses an upload URL with a bad signature, an altered expiry or a body over the cap, and a start before the upload', async () => {
    const build = await initiate(alice.key);
    assert.match(build.upload_url, /^http:\/\/.+\/api\/v1\/images\/build\/[a-z0-9]+\/context\?expires=\d+&signature=/);
    const early = await t.request('POST', `/api/v1/images/build/${build.build_id}/start`, { key: alice.key, body: { context_uploaded: true } });
    assert.equal(early.statusCode, 409, early.body);
    const badSignature = await upload(build.upload_url.replace(/signature=[^&]+/, 'signature=AAAA'), 'x');
    assert.equal(badSignature.statusCode, 403, badSignature.body);
    assert.equal(badSignature.json<{ code: string }>().code, 'UPLOAD_URL_INVALID');
    const altered = await upload(build.upload_url.replace(/expires=(\d+)/, (_m, e: string) => `expires=${Number(e) + 3600}`), 'x');
    assert.equal(altered.statusCode, 403, altered.body);
    const declaredTooBig = await upload(build.upload_url, 'y'.repeat(5000));
    assert.equal(declaredTooBig.statusCode, 413, declaredTooBig.body);
    assert.equal(declaredTooBig.json<{ code: string }>().code, 'PAYLOAD_TOO_LARGE');
    const fits = await upload(build.upload_url, 'z'.repeat(100));
    assert.equal(fits.statusCode, 200, fits.body);
    assert.equal(fits.json<{ bytes: number }>().bytes, 100);
  });

  it('refuses an expired upload URL', async () => {
    const expired = await startTestServer({ imageBuildUploadTtlSeconds: -5 }, {}, { runtime: new BuildingRuntime() });
    try {
      const response = await expired.request('POST', '/api/v1/images/build', { body: { image_name: 'app', image_tag: 'v1' } });
      assert.equal(response.statusCode, 201, response.body);
      const url = response.json<Initiated>().upload_url.replace(/^https?:\/\/[^/]+/, '');
      const put = await expired.server.app.inject({ method: 'PUT', url, payload: 'x', headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(put.statusCode, 403, put.body);
      assert.match(put.json<{ detail: string }>().detail, /expired/);
    } finally {
      await expired.close();
    }
  });

  it('runs uploaded builds one at a time, records failures with their step, and keeps images to their owner', async () => {
    let release!: () => void;
    runtime.imageBuilder.hold = new Promise((r) => (release = r));
    const ok = await initiate(alice.key, { image_name: 'web', image_tag: 'v1' });
    const bad = await initiate(alice.key, { image_name: 'web', image_tag: 'broken', dockerfile_path: 'fail.Dockerfile' });
    for (const b of [ok, bad]) {
      assert.equal((await upload(b.upload_url, 'tar')).statusCode, 200);
      const started = await t.request('POST', `/api/v1/images/build/${b.build_id}/start`, { key: alice.key, body: { context_uploaded: true } });
      assert.equal(started.statusCode, 200, started.body);
    }
    const queued = await waitFor(alice.key, bad.build_id, ['PENDING']);
    assert.equal(queued.status, 'PENDING');
    const scrape = async (): Promise<string> => (await t.request('GET', '/metrics')).body;
    assert.match(await scrape(), /^corral_image_builds\{state="queued"\} 1$/m);
    assert.match(await scrape(), /^corral_image_builds\{state="running"\} 1$/m);
    release();
    await waitFor(alice.key, ok.build_id, ['COMPLETED']);
    const failed = await waitFor(alice.key, bad.build_id, ['FAILED']);
    const metrics = await scrape();
    assert.match(metrics, /^corral_image_builds_total\{kind="build",result="completed"\} 1$/m);
    assert.match(metrics, /^corral_image_builds_total\{kind="build",result="failed"\} 1$/m);
    assert.match(metrics, /^corral_image_build_duration_seconds_count\{kind="build",result="completed"\} 1$/m);
    assert.equal(failed.failedStep, 'STEP 1/1: RUN false');
    assert.match(failed.errorMessage ?? '', /RUN false[\s\S]*boom output/);
    assert.equal(runtime.imageBuilder.maxRunning, 1);
    const logs = await t.request('GET', `/api/v1/images/build/${ok.build_id}/logs`, { key: alice.key });
    assert.match(logs.json<{ logs: string }>().logs, /base refused/);

    const mine = (await t.request('GET', '/api/v1/images', { key: alice.key })).json<{ data: { fullImagePath: string; status: string }[]; total_count: number }>();
    assert.deepEqual(mine.data.filter((r) => r.status === 'COMPLETED').map((r) => r.fullImagePath), [ok.fullImagePath]);
    // A build not started yet is listed too, as Prime lists open builds beside images.
    assert.ok(mine.data.some((r) => r.status === 'PENDING' && r.fullImagePath.endsWith('/app:v1')));
    assert.equal(mine.total_count, 1);
    const theirs = (await t.request('GET', '/api/v1/images', { key: bob.key })).json<{ data: unknown[] }>();
    assert.deepEqual(theirs.data, []);
    assert.equal((await t.request('GET', `/api/v1/images/build/${ok.build_id}`, { key: bob.key })).statusCode, 404);
    assert.equal((await t.request('GET', `/api/v1/images/build/${ok.build_id}/logs`, { key: bob.key })).statusCode, 404);

    const stolen = await t.request('POST', '/api/v1/sandbox', { key: bob.key, body: { name: 'steal', docker_image: ok.fullImagePath } });
    assert.equal(stolen.statusCode, 404, stolen.body);
    assert.equal(stolen.json<{ code: string }>().code, 'IMAGE_NOT_FOUND');
    const missing = await t.request('POST', '/api/v1/sandbox', { key: alice.key, body: { name: 'nope', docker_image: 'corral.local/x/none:v1' } });
    assert.equal(missing.statusCode, 404, missing.body);
    const check = await t.request('POST', '/api/v1/template/check-docker-image', { key: bob.key, body: { image: ok.fullImagePath } });
    assert.deepEqual(check.json(), { accessible: false, details: `Image ${ok.fullImagePath} not found` });
    const own = await t.request('POST', '/api/v1/template/check-docker-image', { key: alice.key, body: { image: ok.fullImagePath } });
    assert.equal(own.json<{ accessible: boolean }>().accessible, true);

    // Published: everyone may run it by its full path; only its owner lists, changes or deletes it.
    const pub = await t.request('PATCH', '/api/v1/images/web/v1/visibility', { key: alice.key, body: { visibility: 'PUBLIC' } });
    assert.equal(pub.statusCode, 200, pub.body);
    assert.equal(pub.json<{ visibility: string }>().visibility, 'PUBLIC');
    runtime.openAll();
    const borrowed = await t.request('POST', '/api/v1/sandbox', { key: bob.key, body: { name: 'borrow', docker_image: ok.fullImagePath } });
    assert.equal(borrowed.statusCode, 201, borrowed.body);
    assert.equal((await t.request('POST', '/api/v1/template/check-docker-image', { key: bob.key, body: { image: ok.fullImagePath } })).json<{ accessible: boolean }>().accessible, true);
    assert.deepEqual((await t.request('GET', '/api/v1/images', { key: bob.key })).json<{ data: unknown[] }>().data, [], 'a public image is not in other users\' lists');
    assert.equal((await t.request('PATCH', '/api/v1/images/web/v1/visibility', { key: bob.key, body: { visibility: 'PRIVATE' } })).statusCode, 404);
    const bobPatch = await t.request('PATCH', '/api/v1/images', { key: bob.key, body: { updates: [{ source: { reference: ok.fullImagePath }, set: { visibility: 'PRIVATE' } }] } });
    assert.equal(bobPatch.json<{ results: { error: { code: string } | null }[] }>().results[0]?.error?.code, 'IMAGE_NOT_FOUND');
    assert.equal((await t.request('DELETE', '/api/v1/images/web/v1', { key: bob.key })).statusCode, 404);
    const priv = await t.request('PATCH', '/api/v1/images/web/v1/visibility', { key: alice.key, body: { visibility: 'PRIVATE' } });
    assert.equal(priv.statusCode, 200, priv.body);
    assert.equal(priv.json<{ images: { fullImagePath: string; visibility: string }[] }>().images[0]?.fullImagePath, ok.fullImagePath);
    assert.equal(priv.json<{ images: { visibility: string }[] }>().images[0]?.visibility, 'PRIVATE');
    const unpublished = await t.request('POST', '/api/v1/sandbox', { key: bob.key, body: { name: 'borrow2', docker_image: ok.fullImagePath } });
    assert.equal(unpublished.statusCode, 404, 'PRIVATE again: new uses by others are refused');
    assert.equal((await t.request('DELETE', `/api/v1/sandbox/${borrowed.json<{ id: string }>().id}`, { key: bob.key })).statusCode, 200);
    assert.equal((await t.request('DELETE', '/api/v1/images/web/v1', { key: bob.key })).statusCode, 404);
    assert.equal((await t.request('DELETE', '/api/v1/images/web/v1', { key: alice.key })).statusCode, 200);
    const left = (await t.request('GET', '/api/v1/images', { key: alice.key })).json<{ data: { status: string }[]; total_count: number }>();
    assert.equal(left.total_count, 0);
    assert.deepEqual(left.data.filter((r) => r.status === 'COMPLETED'), []);
  });

  it('transfers source images (one, or several comma-separated with per-source failures); a refused pull fails the build with its reason', async () => {
    const one = await t.request('POST', '/api/v1/images/build', { key: bob.key, body: { source_image: '127.0.0.1:5000/corral/tool:1.2' } });
    assert.equal(one.statusCode, 201, one.body);
    const single = one.json<{ build_id: string; buildIds: string[]; upload_url: string | null; expires_in: number | null; fullImagePath: string }>();
    assert.deepEqual([single.upload_url, single.expires_in, single.buildIds], ['', 0, [single.build_id]]);
    assert.equal(single.fullImagePath, `corral.local/${bob.id}/tool:1.2`);
    assert.equal((await waitFor(bob.key, single.build_id, ['COMPLETED', 'FAILED'])).status, 'COMPLETED');
    assert.equal(runtime.imageBuilder.transfers.at(-1)?.source, '127.0.0.1:5000/corral/tool:1.2');
    assert.equal(runtime.imageBuilder.transfers.at(-1)?.credentials, undefined);

    const bulk = await t.request('POST', '/api/v1/images/build', { key: bob.key, body: { sourceImage: '127.0.0.1:5000/a/refused:v1, bad ref!, 127.0.0.1:5000/b/ok@sha256:' + 'a'.repeat(64) } });
    assert.equal(bulk.statusCode, 201, bulk.body);
    const { results, failed } = bulk.json<{ results: { sourceImage: string; success: boolean; buildId: string | null; fullImagePath: string | null; error: string | null }[]; failed: { sourceImage: string }[] }>();
    assert.deepEqual(results.map((r) => r.success), [true, false, true]);
    assert.deepEqual(failed.map((f) => f.sourceImage), ['bad ref!']);
    assert.equal(results[2]?.fullImagePath, `corral.local/${bob.id}/ok:sha256-${'a'.repeat(16)}`);
    const refused = await waitFor(bob.key, results[0]!.buildId!, ['COMPLETED', 'FAILED']);
    assert.equal(refused.status, 'FAILED');
    assert.match(refused.errorMessage ?? '', /refused access/);
    // The user's credentials for the source's registry go with the pull.
    const cred = await t.request('POST', '/api/v1/template/registry-credentials', { key: bob.key, body: { name: 'r', server: '127.0.0.1:5000', username: 'u', password: 'p' } });
    assert.equal(cred.statusCode, 201, cred.body);
    const withCred = await t.request('POST', '/api/v1/images/build', { key: bob.key, body: { source_image: '127.0.0.1:5000/corral/tool:1.3' } });
    await waitFor(bob.key, withCred.json<{ build_id: string }>().build_id, ['COMPLETED', 'FAILED']);
    assert.deepEqual(runtime.imageBuilder.transfers.at(-1)?.credentials, { username: 'u', password: 'p' });
    const other = await t.request('POST', '/api/v1/images/build', { key: bob.key, body: { source_image: '127.0.0.1:5001/x:1', registry_credentials_id: cred.json<{ id: string }>().id } });
    assert.equal(other.statusCode, 422, other.body);
  });

  it('PATCH /images renames and publishes per item (dry run; conflicts and missing images fail alone); vm-build answers the image', async () => {
    for (const tag of ['p1', 'p2']) {
      const r = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { source_image: `127.0.0.1:5000/corral/patchme:${tag}` } });
      await waitFor(alice.key, r.json<{ build_id: string }>().build_id, ['COMPLETED']);
    }
    const patch = (body: unknown) => t.request('PATCH', '/api/v1/images', { key: alice.key, body });
    const dry = await patch({ dryRun: true, updates: [{ source: { reference: 'patchme:p1' }, set: { name: 'renamed' } }] });
    assert.equal(dry.statusCode, 200, dry.body);
    assert.deepEqual(dry.json<{ success: boolean; dryRun: boolean; results: { after: { name: string } }[] }>().results[0]?.after.name, 'renamed');
    assert.equal(runtime.imageBuilder.renames.length, 0, 'a dry run changes nothing');
    const response = await patch({
      mode: 'explicit',
      updates: [
        { source: { reference: `${alice.id}/patchme:p1` }, set: { name: 'renamed' } },
        { source: { owner: { type: 'personal' }, name: 'patchme', tag: 'p2' }, set: { name: 'renamed', tag: 'p1' } },
        { source: { owner: { type: 'personal' }, name: 'patchme', tag: 'p2' }, set: { visibility: 'PUBLIC' } },
        { source: { reference: 'nosuch:v1' }, set: { tag: 'v2' } },
        { source: { owner: { type: 'team', teamId: 'not-mine' }, name: 'patchme', tag: 'p2' }, set: { tag: 'v9' } },
      ],
    });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json<{ success: boolean; results: { success: boolean; before: { name: string; tag: string } | null; after: { name: string; tag: string; visibility: string } | null; error: { code: string } | null }[] }>();
    assert.equal(body.success, false);
    assert.deepEqual(body.results.map((r) => r.error?.code ?? 'ok'), ['ok', 'CONFLICT', 'ok', 'IMAGE_NOT_FOUND', 'IMAGE_NOT_FOUND']);
    assert.equal(body.results[2]?.after?.visibility, 'PUBLIC');
    assert.deepEqual(body.results[0]?.after, { owner: { type: 'personal' }, name: 'renamed', tag: 'p1', visibility: 'PRIVATE' });
    assert.deepEqual(runtime.imageBuilder.renames, [[`corral.local/${alice.id}/patchme:p1`, `corral.local/${alice.id}/renamed:p1`]]);
    const names = (await t.request('GET', '/api/v1/images', { key: alice.key })).json<{ data: { imageName: string; imageTag: string }[] }>().data.map((r) => `${r.imageName}:${r.imageTag}`);
    assert.ok(names.includes('renamed:p1') && !names.includes('patchme:p1'), names.join());
    assert.equal((await patch({ updates: [] })).statusCode, 422);
    // Bob cannot reach alice's image by its reference.
    const bobs = await t.request('PATCH', '/api/v1/images', { key: bob.key, body: { updates: [{ source: { reference: `${alice.id}/renamed:p1` }, set: { tag: 'mine' } }] } });
    assert.equal(bobs.json<{ results: { error: { code: string } | null }[] }>().results[0]?.error?.code, 'IMAGE_NOT_FOUND');

    const vm = await t.request('POST', '/api/v1/images/renamed/p1/vm-build', { key: alice.key, body: {} });
    assert.equal(vm.statusCode, 200, vm.body);
    assert.deepEqual([vm.json<{ status: string }>().status, vm.json<{ fullImagePath: string }>().fullImagePath], ['COMPLETED', `corral.local/${alice.id}/renamed:p1`]);
    const bobVm = await t.request('POST', '/api/v1/images/renamed/p1/vm-build', { key: bob.key, body: {} });
    assert.equal(bobVm.statusCode, 404, bobVm.body);
  });

  it('a build\'s visibility: PUBLIC or PRIVATE as asked, INHERIT keeps the tag\'s current one (PRIVATE for a new tag)', async () => {
    const transfer = async (visibility?: string): Promise<{ visibility: string; build_id: string }> => {
      const r = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { source_image: '127.0.0.1:5000/corral/vis:v1', ...(visibility ? { visibility } : {}) } });
      assert.equal(r.statusCode, 201, r.body);
      const started = r.json<{ visibility: string; build_id: string }>();
      await waitFor(alice.key, started.build_id, ['COMPLETED']);
      return started;
    };
    const stored = async (): Promise<string | undefined> =>
      (await t.request('GET', '/api/v1/images', { key: alice.key })).json<{ data: { imageName: string; status: string; visibility: string }[] }>().data.find((r) => r.imageName === 'vis' && r.status === 'COMPLETED')?.visibility;
    assert.equal((await transfer()).visibility, 'PRIVATE');
    assert.equal(await stored(), 'PRIVATE');
    assert.equal((await transfer('PUBLIC')).visibility, 'PUBLIC');
    assert.equal(await stored(), 'PUBLIC');
    assert.equal((await transfer('INHERIT')).visibility, 'PUBLIC');
    assert.equal(await stored(), 'PUBLIC');
    assert.equal((await transfer('PRIVATE')).visibility, 'PRIVATE');
    assert.equal(await stored(), 'PRIVATE');
    assert.equal((await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { source_image: '127.0.0.1:5000/corral/vis:v1', visibility: 'SHARED' } })).statusCode, 422);
  });

  it('answers check-docker-image for an unreachable or malformed reference without a 5xx', async () => {
    const bad = await t.request('POST', '/api/v1/template/check-docker-image', { key: alice.key, body: { image: 'UPPER CASE!!' } });
    assert.equal(bad.statusCode, 200, bad.body);
    assert.equal(bad.json<{ accessible: boolean }>().accessible, false);
    const missing = await t.request('POST', '/api/v1/template/check-docker-image', { key: alice.key, body: { image: '127.0.0.1:1/none:v1' } });
    assert.equal(missing.statusCode, 200, missing.body);
    assert.equal(missing.json<{ accessible: boolean }>().accessible, false);
  });
});

describe('images API across a restart', () => {
  it('fails the builds whose replica is gone, and only those', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'corral-image-restart-'));
    try {
      const first = await startTestServer({ dataDir, replicaId: 'replica-old' }, {}, { runtime: new BuildingRuntime() });
      const init = (body: Record<string, unknown>) => first.request('POST', '/api/v1/images/build', { body: { image_tag: 'v1', ...body } });
      const uploaded = (await init({ image_name: 'uploaded' })).json<Initiated>();
      const fresh = (await init({ image_name: 'fresh' })).json<Initiated>();
      const put = await first.server.app.inject({ method: 'PUT', url: uploaded.upload_url.replace(/^https?:\/\/[^/]+/, ''), payload: 'tar' });
      assert.equal(put.statusCode, 200, put.body);
      const adminKey = first.adminKey;
      await first.close();
      const second = await startTestServer({ dataDir, replicaId: 'replica-new', bootstrapApiKey: adminKey }, {}, { runtime: new BuildingRuntime() });
      try {
        const status = (id: string) => second.request('GET', `/api/v1/images/build/${id}`).then((r) => r.json<{ status: string; errorMessage: string | null }>());
        const lost = await status(uploaded.build_id);
        assert.equal(lost.status, 'FAILED');
        assert.match(lost.errorMessage ?? '', /interrupted.*replica-old/);
        assert.equal((await status(fresh.build_id)).status, 'PENDING', 'nothing uploaded: nothing lost');
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('images API without a builder', () => {
  it('answers 501 on a driver without image builds', async () => {
    const t = await startTestServer();
    try {
      const response = await t.request('POST', '/api/v1/images/build', { body: { image_name: 'app', image_tag: 'v1' } });
      assert.equal(response.statusCode, 501, response.body);
      assert.equal(response.json<{ code: string }>().code, 'NOT_IMPLEMENTED');
    } finally {
      await t.close();
    }
  });
});

/**
 * What Prime's clients send for images, byte for byte where it matters, against a real server, once
 * per driver (real buildah on oci, the engine's builder on docker):
 * - `prime_sandboxes.ImageClient` (SDK 0.2.39, `images.py`): `initiate_build(BuildImageRequest(...))`
 *   posts `model_dump(exclude_none=True)`, the caller PUTs the context to `upload_url` as the CLI does,
 *   `start_build` posts `{"context_uploaded": true}`, `get_build_status` is polled, `list()` sends
 *   `offset`/`limit`; the responses are checked against the SDK's pydantic models' requirements.
 * - `prime images push` (`prime_cli/commands/images.py`): a `tarfile` `w:gz` of the context as `.`
 *   plus the Dockerfile as `.__prime_dockerfile__`, `httpx.put(upload_url, content=f,
 *   headers={"Content-Type": "application/octet-stream"})`; then `prime images list` (no query) and
 *   `prime images delete` (`DELETE /images/{name}/{tag}`).
 * Every API call carries the APIClient's headers (`Content-Type: application/json` even on GET and
 * DELETE, `Authorization: Bearer`, its User-Agent) and httpx's own. The archives are made by
 * Python's `tarfile`, as the CLI makes them (only the SDK itself is not installed here).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { imageBuildMissing, startImageBuildServer } from '../testing/image-build-server.js';
import { eventually, unavailableSuite } from '../testing/runtime-available.js';
import { type HttpAnswer, sendExact } from '../testing/exact-http.js';
import type { ListeningTestServer } from '../testing/test-server.js';

function pythonMissing(): string | undefined {
  try {
    execFileSync('python3', ['-c', 'import tarfile, gzip'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return "python3 (for the CLI's tarfile archives) is missing";
  }
}


/** httpx's default request headers (httpx 0.28). */
const HTTPX_HEADERS = { accept: '*/*', 'accept-encoding': 'gzip, deflate', connection: 'keep-alive' };

/** `prime_sandboxes.APIClient.request`: `/api/v1` + path, its session headers, `params` as the query, `json` compact. */
function apiClient(baseUrl: string, apiKey: string) {
  return (method: string, endpoint: string, options: { params?: Record<string, string | number>; json?: Record<string, unknown> } = {}): Promise<HttpAnswer> => {
    const query = options.params ? `?${new URLSearchParams(Object.entries(options.params).map(([k, v]): [string, string] => [k, String(v)])).toString()}` : '';
    const headers: Record<string, string> = {
      ...HTTPX_HEADERS,
      'user-agent': 'prime-sandboxes/0.2.39 python/3.11.2',
      'content-type': 'application/json',
      authorization: `Bearer ${apiKey}`,
    };
    let body: Buffer | undefined;
    if (options.json !== undefined) body = Buffer.from(JSON.stringify(options.json));
    // httpx sends Content-Length: 0 on a POST/PUT/PATCH without a body, and none on GET/DELETE.
    if (body !== undefined || ['POST', 'PUT', 'PATCH'].includes(method)) headers['content-length'] = String(body?.length ?? 0);
    return sendExact(`${baseUrl}/api/v1${endpoint}${query}`, method, headers, body);
  };
}

/** `httpx.put(upload_url, content=<file>, headers={"Content-Type": "application/octet-stream"})` (no API key). */
function httpxPutFile(url: string, file: string): Promise<HttpAnswer> {
  const content = readFileSync(file);
  return sendExact(url, 'PUT', { ...HTTPX_HEADERS, 'user-agent': 'python-httpx/0.28.1', 'content-type': 'application/octet-stream', 'content-length': String(content.length) }, content);
}

/** A `tarfile.open(path, "w:gz")` archive: `tar.add(context, arcname=".")`, then optionally the Dockerfile under `dockerfileArcname`. */
function pythonTarball(context: string, out: string, dockerfile?: { path: string; arcname: string }): void {
  const script = [
    'import sys, tarfile',
    'with tarfile.open(sys.argv[2], "w:gz") as tar:',
    '    tar.add(sys.argv[1], arcname=".")',
    '    if len(sys.argv) > 3:',
    '        tar.add(sys.argv[3], arcname=sys.argv[4])',
  ].join('\n');
  execFileSync('python3', ['-c', script, context, out, ...(dockerfile ? [dockerfile.path, dockerfile.arcname] : [])]);
}

const IMAGE_STATUSES = ['PENDING', 'UPLOADING', 'BUILDING', 'COMPLETED', 'FAILED', 'CANCELLED'];

/** What pydantic's `BuildImageResponse` (with `requires_upload`) demands of the answer. */
function assertBuildImageResponse(body: Record<string, unknown>): void {
  assert.equal(typeof body.build_id, 'string');
  assert.equal(typeof body.fullImagePath, 'string');
  assert.ok(Array.isArray(body.buildIds));
  assert.equal(typeof body.upload_url, 'string', 'Dockerfile build response requires upload_url');
  assert.equal(typeof body.expires_in, 'number', 'Dockerfile build response requires expires_in');
  assert.ok(body.visibility === undefined || body.visibility === null || ['PRIVATE', 'PUBLIC'].includes(body.visibility as string));
  assert.equal('results' in body, false, 'a Dockerfile build is not the bulk form');
}

/** What pydantic's `ImageListResponse` / `ImageListItem` demand (dates must parse as ISO 8601). */
function assertImageListResponse(body: Record<string, unknown>): Array<Record<string, unknown>> {
  assert.ok(Array.isArray(body.data));
  assert.equal(typeof body.offset, 'number');
  assert.equal(typeof body.limit, 'number');
  const rows = body.data as Array<Record<string, unknown>>;
  for (const row of rows) {
    for (const key of ['id', 'imageName', 'imageTag']) assert.equal(typeof row[key], 'string', key);
    assert.ok(['CONTAINER_IMAGE', 'VM_SANDBOX'].includes(row.artifactType as string));
    assert.ok(IMAGE_STATUSES.includes(row.status as string));
    assert.ok(['PRIVATE', 'PUBLIC'].includes(row.visibility as string));
    assert.ok(['personal', 'team', 'platform'].includes(row.ownerType as string));
    assert.ok(!Number.isNaN(Date.parse(row.createdAt as string)));
    for (const key of ['startedAt', 'completedAt', 'pushedAt']) assert.ok(row[key] === null || !Number.isNaN(Date.parse(row[key] as string)), key);
  }
  return rows;
}

for (const driver of ['oci', 'docker'] as const) {
  const missing = imageBuildMissing(driver) ?? pythonMissing();
  if (missing) {
    unavailableSuite(`Prime's ImageClient and \`prime images push\` against Corral (${driver} driver)`, missing);
  } else {
    describe(`Prime's ImageClient and \`prime images push\` against Corral (${driver} driver)`, { timeout: 900_000 }, () => {
      let server: ListeningTestServer;
      let user: { id: string; key: string };
      const scratch = mkdtempSync(join(tmpdir(), 'corral-prime-images-'));

      before(async () => {
        server = await startImageBuildServer('prime-img', { imageBuildMemoryMb: 1024, imageBuildCpus: 1 }, ['python', 'busybox'], driver);
        user = await server.t.createUser('prime-images');
      });
      after(async () => {
        // Built images leave the driver's store (the docker engine's is shared with other tests).
        if (server) for (const row of (await apiClient(server.url, user.key)('GET', '/images')).json<{ data: { imageName: string; imageTag: string }[] }>().data) {
          await apiClient(server.url, user.key)('DELETE', `/images/${row.imageName}/${row.imageTag}`);
        }
        await server?.close();
        rmSync(scratch, { recursive: true, force: true });
      });

      /** Polls `get_build_status` until the build ends. */
      const waitForBuild = (call: ReturnType<typeof apiClient>, id: string) =>
        eventually(async () => {
          const answer = await call('GET', `/images/build/${id}`);
          assert.equal(answer.status, 200, answer.body);
          const body = answer.json<{ status: string; errorMessage: string | null; fullImagePath: string }>();
          return ['COMPLETED', 'FAILED', 'CANCELLED'].includes(body.status) ? body : undefined;
        }, 600_000, `build ${id}`);

      /** Creates a sandbox of `image` as Prime's SDK does and runs `argv` in it; its output. */
      const runInSandbox = async (call: ReturnType<typeof apiClient>, image: string, argv: string[]): Promise<string> => {
        const created = await call('POST', '/sandbox', {
          json: { name: 'prime-built', docker_image: image, cpu_cores: 1.0, memory_gb: 1.0, disk_size_gb: 5.0, gpu_count: 0, timeout_minutes: 60, labels: [] },
        });
        assert.equal(created.status, 201, created.body);
        const id = created.json<{ id: string }>().id;
        const running = await eventually(async () => {
          const s = (await call('GET', `/sandbox/${id}`)).json<{ status: string; errorMessage: string | null }>();
          return ['RUNNING', 'ERROR'].includes(s.status) ? s : undefined;
        }, 180_000, 'RUNNING');
        assert.equal(running.status, 'RUNNING', running.errorMessage ?? '');
        const row = await server.t.server.store.getSandbox(id);
        const exec = await server.t.server.runtime!.exec(row!.runtimeId!, { argv });
        exec.stderr.resume();
        let out = '';
        for await (const chunk of exec.stdout) out += (chunk as Buffer).toString();
        await exec.wait();
        assert.equal((await call('DELETE', `/sandbox/${id}`)).status, 200);
        return out;
      };

      it('ImageClient: initiate_build, the upload, start_build, get_build_status and list build FROM python:3.11-slim (multi-stage, COPY --from, RUN); a sandbox runs it', async () => {
        const call = apiClient(server.url, user.key);
        const context = join(scratch, 'py');
        mkdirSync(context);
        writeFileSync(
          join(context, 'Dockerfile'),
          [
            'FROM python:3.11-slim AS build',
            'WORKDIR /src',
            'COPY make_greeting.py .',
            'RUN python3 make_greeting.py > greeting.txt',
            'FROM python:3.11-slim',
            'COPY --from=build /src/greeting.txt /app/greeting.txt',
            'COPY app.py /app/app.py',
            'CMD ["python3", "/app/app.py"]',
            '',
          ].join('\n'),
        );
        writeFileSync(join(context, 'make_greeting.py'), 'import sys\nprint(f"built with python {sys.version_info.major}.{sys.version_info.minor}")\n');
        writeFileSync(join(context, 'app.py'), 'print(open("/app/greeting.txt").read().strip() + ", run in a sandbox")\n');
        const tarball = join(scratch, 'py.tar.gz');
        pythonTarball(context, tarball);

        // BuildImageRequest(image_name=..., image_tag=...).model_dump(by_alias=False, exclude_none=True)
        const initiated = await call('POST', '/images/build', { json: { image_name: 'pyapp', image_tag: 'v1', dockerfile_path: 'Dockerfile', platform: 'linux/amd64' } });
        assert.equal(initiated.status, 201, initiated.body);
        const build = initiated.json<Record<string, unknown>>();
        assertBuildImageResponse(build);
        const id = build.build_id as string;

        const uploaded = await httpxPutFile(build.upload_url as string, tarball);
        assert.equal(uploaded.status, 200, uploaded.body);
        const started = await call('POST', `/images/build/${id}/start`, { json: { context_uploaded: true } });
        assert.equal(started.status, 200, started.body);

        // The build shows in list() while it runs or once it is done.
        const listed = await call('GET', '/images', { params: { offset: 0, limit: 100 } });
        assert.equal(listed.status, 200, listed.body);
        assert.deepEqual(assertImageListResponse(listed.json()).map((r) => `${r.imageName}:${r.imageTag}`), ['pyapp:v1']);

        const done = await waitForBuild(call, id);
        assert.equal(done.status, 'COMPLETED', done.errorMessage ?? '');
        assert.equal(done.fullImagePath, build.fullImagePath);
        const rows = assertImageListResponse((await call('GET', '/images', { params: { offset: 0, limit: 100 } })).json());
        assert.deepEqual(rows.map((r) => [r.imageName, r.status, r.fullImagePath]), [['pyapp', 'COMPLETED', done.fullImagePath]]);

        const out = await runInSandbox(call, done.fullImagePath, ['python3', '/app/app.py']);
        assert.equal(out, 'built with python 3.11, run in a sandbox\n');
      });

      it('`prime images push` (Dockerfile packed as .__prime_dockerfile__), `prime images list` and `prime images delete`', async () => {
        const call = apiClient(server.url, user.key);
        const context = join(scratch, 'push');
        mkdirSync(join(context, 'bin'), { recursive: true });
        writeFileSync(join(context, 'bin', 'hello.sh'), '#!/bin/sh\necho pushed-by-prime\n');
        const dockerfile = join(scratch, 'push.Dockerfile');
        writeFileSync(dockerfile, 'FROM busybox AS stage\nCOPY bin /opt/bin\nRUN chmod +x /opt/bin/hello.sh\nFROM busybox\nCOPY --from=stage /opt/bin /opt/bin\n');
        const tarball = join(scratch, 'push.tar.gz');
        pythonTarball(context, tarball, { path: dockerfile, arcname: '.__prime_dockerfile__' });

        const initiated = await call('POST', '/images/build', { json: { image_name: 'pushed', image_tag: 'v2', dockerfile_path: '.__prime_dockerfile__', platform: 'linux/amd64' } });
        assert.equal(initiated.status, 201, initiated.body);
        const build = initiated.json<{ build_id: string; upload_url: string; fullImagePath: string }>();
        assert.equal((await httpxPutFile(build.upload_url, tarball)).status, 200);
        assert.equal((await call('POST', `/images/build/${build.build_id}/start`, { json: { context_uploaded: true } })).status, 200);
        const done = await waitForBuild(call, build.build_id);
        assert.equal(done.status, 'COMPLETED', done.errorMessage ?? '');
        assert.equal(await runInSandbox(call, build.fullImagePath, ['/opt/bin/hello.sh']), 'pushed-by-prime\n');

        // `prime images list`: GET /images with no query; it keeps ownerType personal rows and shows displayRef.
        const listed = await call('GET', '/images');
        assert.equal(listed.status, 200, listed.body);
        const rows = assertImageListResponse(listed.json()).filter((r) => r.ownerType === 'personal');
        assert.deepEqual(rows.map((r) => r.displayRef).sort(), [`${user.id}/pushed:v2`, `${user.id}/pyapp:v1`]);

        // `prime images delete pushed:v2 --yes`: DELETE with the APIClient's JSON content type and no body.
        const deleted = await call('DELETE', '/images/pushed/v2');
        assert.equal(deleted.status, 200, deleted.body);
        assert.equal(deleted.json<{ success: boolean }>().success, true);
        const again = await call('DELETE', '/images/pushed/v2');
        assert.equal(again.status, 404, 'the CLI prints "not found" on a 404');
        const after = assertImageListResponse((await call('GET', '/images')).json());
        assert.deepEqual(after.map((r) => r.imageName), ['pyapp']);
      });
    });
  }
}

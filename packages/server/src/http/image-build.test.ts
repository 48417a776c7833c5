/**
 * Dockerfile builds through the images API on the oci driver with real buildah: a multi-stage
 * build from the offline busybox image runs in a sandbox for its owner only; a RUN step has no
 * network and runs as an unprivileged host id; a failing RUN reports its step and output; one
 * user's image is not another's `FROM`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildImage } from '../images/image-catalog.js';
import { createRuntimeImages } from '../runtime/create-runtime.js';
import { driverMissing, eventually, unavailableSuite } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

function buildahMissing(): string | undefined {
  try {
    execFileSync('buildah', ['--version'], { stdio: 'ignore' });
    execFileSync('skopeo', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'buildah or skopeo missing (run scripts/ensure-oci.sh)';
  }
}

interface BuildStatus {
  status: string;
  errorMessage: string | null;
  failedStep: string | null;
  fullImagePath: string;
}

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

const missing = driverMissing('oci') ?? buildahMissing();
if (missing) {
  unavailableSuite('Dockerfile builds on the oci driver', missing);
} else {
  describe('Dockerfile builds on the oci driver', { timeout: 600_000 }, () => {
    let t: TestServer;
    let alice: { id: string; key: string };
    let bob: { id: string; key: string };
    const scratch = mkdtempSync(join(tmpdir(), 'corral-build-ctx-'));
    const hostMarker = join(tmpdir(), `corral-host-marker-${randomBytes(6).toString('hex')}`);

    before(async () => {
      writeFileSync(hostMarker, 'host');
      const dataDir = mkdtempSync(join(tmpdir(), 'corral-build-'));
      await buildImage('busybox', 'busybox:latest', await createRuntimeImages({ runtime: 'oci', dataDir }));
      t = await startTestServer({
        runtime: 'oci',
        dataDir,
        instanceId: `ib-${randomBytes(4).toString('hex')}`,
        reconcileIntervalMs: 300,
        imageBuildMemoryMb: 512,
        imageBuildCpus: 0.5,
        imageBuildTimeoutSeconds: 20,
      });
      alice = await t.createUser('alice');
      bob = await t.createUser('bob');
    });
    after(async () => {
      const runtime = t.server.runtime;
      if (runtime) for (const c of await runtime.list()) await runtime.remove(c.runtimeId);
      await t.close();
      rmSync(t.dataDir, { recursive: true, force: true });
      rmSync(scratch, { recursive: true, force: true });
      rmSync(hostMarker, { force: true });
    });

    /** Builds `files` (a Dockerfile and its context) as `name:tag` for `key`; the final status. */
    const build = async (key: string, name: string, tag: string, files: Record<string, string>, prepare?: (dir: string) => void): Promise<BuildStatus & { id: string }> => {
      const dir = join(scratch, `${name}-${tag}`);
      mkdirSync(dir, { recursive: true });
      for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
      prepare?.(dir);
      const tarball = `${dir}.tar.gz`;
      execFileSync('tar', ['-czf', tarball, '-C', dir, '.']);
      const init = await t.request('POST', '/api/v1/images/build', { key, body: { image_name: name, image_tag: tag } });
      assert.equal(init.statusCode, 201, init.body);
      const { build_id: id, upload_url: url } = init.json<{ build_id: string; upload_url: string }>();
      const put = await t.server.app.inject({ method: 'PUT', url: url.replace(/^https?:\/\/[^/]+/, ''), payload: readFileSync(tarball), headers: { 'content-type': 'application/octet-stream' } });
      assert.equal(put.statusCode, 200, put.body);
      const start = await t.request('POST', `/api/v1/images/build/${id}/start`, { key, body: { context_uploaded: true } });
      assert.equal(start.statusCode, 200, start.body);
      const done = await eventually(async () => {
        const status = (await t.request('GET', `/api/v1/images/build/${id}`, { key })).json<BuildStatus>();
        return ['COMPLETED', 'FAILED'].includes(status.status) ? status : undefined;
      }, 300_000, `build ${name}:${tag}`);
      return { ...done, id };
    };

    let image = '';
    it('builds a multi-stage Dockerfile (ARG, ENV, WORKDIR, COPY, COPY --from, RUN) that a sandbox of its owner runs', async () => {
      const result = await build(alice.key, 'hello', 'v1', {
        Dockerfile: [
          'FROM busybox AS builder',
          'ARG GREETING=hello',
          'ENV STAGE=build',
          'WORKDIR /src',
          'COPY app.sh ./',
          // What a RUN step sees: its network interfaces, its id mapping, and whether a host file is there.
          `RUN echo "$GREETING from $STAGE" > out.txt && ls /sys/class/net | tr '\\n' ' ' >> out.txt && echo >> out.txt && head -1 /proc/self/uid_map >> out.txt && (test -e ${hostMarker} && echo host-visible || echo host-hidden) >> out.txt && (wget -q -T 3 -O- http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && echo net-yes || echo net-no) >> out.txt && (cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max) >> out.txt`,
          'FROM busybox',
          'COPY --from=builder /src /app',
          'WORKDIR /app',
          'CMD ["sh"]',
          '',
        ].join('\n'),
        'app.sh': '#!/bin/sh\necho app-ran\n',
      });
      assert.equal(result.status, 'COMPLETED', `${result.errorMessage ?? ''}`);
      image = result.fullImagePath;
      assert.match(image, new RegExp(`^corral\\.local/${alice.id}/hello:v1$`));
      const logs = (await t.request('GET', `/api/v1/images/build/${result.id}/logs`, { key: alice.key })).json<{ logs: string }>().logs;
      assert.match(logs, /STEP \d+\/\d+: COPY --from=builder/);

      const created = await t.request('POST', '/api/v1/sandbox', { key: alice.key, body: { name: 'built', docker_image: image } });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json<{ id: string }>().id;
      const sandbox = await eventually(async () => {
        const s = (await t.request('GET', `/api/v1/sandbox/${id}`, { key: alice.key })).json<{ status: string; errorMessage: string | null }>();
        return ['RUNNING', 'ERROR'].includes(s.status) ? s : undefined;
      }, 120_000, 'RUNNING');
      assert.equal(sandbox.status, 'RUNNING', sandbox.errorMessage ?? '');
      const row = await t.server.store.getSandbox(id);
      const exec = await t.server.runtime!.exec(row!.runtimeId!, { argv: ['/bin/sh', '-c', 'pwd; sh ./app.sh; cat /app/out.txt; stat -c %u:%g /app/out.txt /app'] });
      exec.stderr.resume();
      const [out] = await Promise.all([collect(exec.stdout), exec.wait()]);
      const lines = out.trim().split('\n');
      assert.equal(lines[0], '/app');
      assert.equal(lines[1], 'app-ran');
      assert.equal(lines[2], 'hello from build');
      assert.equal(lines[3]?.trim(), 'lo', 'a RUN step has only loopback');
      // Root in the build is host id 0x71000000, not host root.
      assert.deepEqual(lines[4]?.trim().split(/\s+/), ['0', String(0x7100_0000), '65536']);
      assert.equal(lines[5], 'host-hidden');
      assert.equal(lines[6], 'net-no');
      assert.equal(lines[7], String(512 * 1024 ** 2), 'the memory limit applies to RUN steps');
      // What the build's root made is root's in the image, not the build's host id.
      assert.deepEqual(lines.slice(8), ['0:0', '0:0']);
      assert.equal((await t.request('DELETE', `/api/v1/sandbox/${id}`, { key: alice.key })).statusCode, 200);
    });

    it('keeps the image from another user (no sandbox, no listing, no FROM) but not from its owner', async () => {
      assert.ok(image, 'the first test built the image');
      const create = await t.request('POST', '/api/v1/sandbox', { key: bob.key, body: { name: 'steal', docker_image: image } });
      assert.equal(create.statusCode, 404, create.body);
      assert.equal(create.json<{ code: string }>().code, 'IMAGE_NOT_FOUND');
      assert.deepEqual((await t.request('GET', '/api/v1/images', { key: bob.key })).json<{ data: unknown[] }>().data, []);
      const from = await build(bob.key, 'steal', 'v1', { Dockerfile: `FROM ${image}\nRUN true\n` });
      assert.equal(from.status, 'FAILED');
      assert.match(from.errorMessage ?? '', /no such image/);
      // Its owner may build on it: the built image's layers go back into buildah from the driver's store.
      const own = await build(alice.key, 'derived', 'v1', { Dockerfile: `FROM ${image}\nRUN test "$(cat /app/out.txt | head -1)" = "hello from build" && rm /app/app.sh\n` });
      assert.equal(own.status, 'COMPLETED', own.errorMessage ?? '');
    });

    it('stops a build that runs past its deadline', async () => {
      const result = await build(alice.key, 'slow', 'v1', { Dockerfile: 'FROM busybox\nRUN echo sleeping && sleep 613\n' });
      assert.equal(result.status, 'FAILED');
      assert.match(result.errorMessage ?? '', /longer than 20 s/);
      assert.match(result.failedStep ?? '', /RUN echo sleeping && sleep 613/);
      // The RUN step's process went with the build (runc had started it in a session of its own).
      // A SIGKILLed process can take a moment to leave on a loaded host.
      const sleeping = (): string[] => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((line) => line.trim() === 'sleep 613');
      for (let i = 0; i < 100 && sleeping().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(sleeping(), []);
    });

    it('refuses a context with a device node, and a Dockerfile that links out of the context', async () => {
      const device = await build(alice.key, 'device', 'v1', { Dockerfile: 'FROM busybox\nCOPY . /ctx\n' }, (dir) => execFileSync('mknod', [join(dir, 'null'), 'c', '1', '3']));
      assert.equal(device.status, 'FAILED');
      assert.match(device.errorMessage ?? '', /not a readable tar archive[\s\S]*null/);
      const linked = await build(alice.key, 'linked', 'v1', {}, (dir) => symlinkSync(hostMarker, join(dir, 'Dockerfile')));
      assert.equal(linked.status, 'FAILED');
      assert.match(linked.errorMessage ?? '', /has no file Dockerfile/);
    });

    it('reports the failing step and its output', async () => {
      const result = await build(alice.key, 'broken', 'v1', { Dockerfile: 'FROM busybox\nRUN echo first-step-ok\nRUN echo about-to-fail && exit 3\n' });
      assert.equal(result.status, 'FAILED');
      assert.match(result.failedStep ?? '', /RUN echo about-to-fail && exit 3/);
      assert.match(result.errorMessage ?? '', /about-to-fail/);
    });
  });
}

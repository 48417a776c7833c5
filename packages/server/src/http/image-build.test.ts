/**
 * Dockerfile builds through the images API with the real builders, once per driver: buildah on
 * the oci driver, Docker Engine's builder on the docker driver. A multi-stage build from the
 * offline busybox image runs in a sandbox for its owner only; a RUN step has no network and the
 * build's memory limit (and on oci runs as an unprivileged host id); a failing RUN reports its
 * step and output; a build past its deadline is stopped with its RUN step; one user's image is not
 * another's `FROM`.
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
import { imageBuildMissing } from '../testing/image-build-server.js';


interface BuildStatus {
  status: string;
  errorMessage: string | null;
  failedStep: string | null;
  fullImagePath: string;
}

/** Creates a sandbox of `image` as `key`'s user, runs `script` in it, deletes it; the script's stdout. */
async function runInNewSandbox(t: TestServer, key: string, name: string, image: string, script: string): Promise<string> {
  const created = await t.request('POST', '/api/v1/sandbox', { key, body: { name, docker_image: image } });
  assert.equal(created.statusCode, 201, created.body);
  const id = created.json<{ id: string }>().id;
  const sandbox = await eventually(async () => {
    const s = (await t.request('GET', `/api/v1/sandbox/${id}`, { key })).json<{ status: string; errorMessage: string | null }>();
    return ['RUNNING', 'ERROR'].includes(s.status) ? s : undefined;
  }, 120_000, 'RUNNING');
  assert.equal(sandbox.status, 'RUNNING', sandbox.errorMessage ?? '');
  const row = await t.server.store.getSandbox(id);
  const exec = await t.server.runtime!.exec(row!.runtimeId!, { argv: ['/bin/sh', '-c', script] });
  exec.stderr.resume();
  const [out] = await Promise.all([collect(exec.stdout), exec.wait()]);
  assert.equal((await t.request('DELETE', `/api/v1/sandbox/${id}`, { key })).statusCode, 200);
  return out;
}

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

for (const driver of ['oci', 'docker'] as const) {
  const missing = driver === 'oci' ? (driverMissing('oci') ?? imageBuildMissing('oci')) : driverMissing('docker');
  if (missing) {
    unavailableSuite(`Dockerfile builds on the ${driver} driver`, missing);
  } else {
    describe(`Dockerfile builds on the ${driver} driver`, { timeout: 600_000 }, () => {
      let t: TestServer;
      let alice: { id: string; key: string };
      let bob: { id: string; key: string };
      const scratch = mkdtempSync(join(tmpdir(), 'corral-build-ctx-'));
      const hostMarker = join(tmpdir(), `corral-host-marker-${randomBytes(6).toString('hex')}`);

      before(async () => {
        writeFileSync(hostMarker, 'host');
        const dataDir = mkdtempSync(join(tmpdir(), 'corral-build-'));
        await buildImage('busybox', 'busybox:latest', await createRuntimeImages({ runtime: driver, dataDir }));
        t = await startTestServer({
          runtime: driver,
          dataDir,
          instanceId: `ib-${randomBytes(4).toString('hex')}`,
          reconcileIntervalMs: 300,
          imageBuildMemoryMb: 512,
          imageBuildCpus: 0.5,
          imageBuildTimeoutSeconds: 20,
          imageBuildDiskGb: 0.25,
        });
        alice = await t.createUser('alice');
        bob = await t.createUser('bob');
      });
      after(async () => {
        // Built images leave the driver's store (the docker engine's is shared with other tests).
        for (const user of [alice, bob]) {
          const images = (await t.request('GET', '/api/v1/images', { key: user.key })).json<{ data: { imageName: string; imageTag: string }[] }>().data;
          for (const i of images) await t.request('DELETE', `/api/v1/images/${i.imageName}/${i.imageTag}`, { key: user.key });
        }
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
            `RUN echo "$GREETING from $STAGE" > out.txt && ls /sys/class/net | tr '\\n' ' ' >> out.txt && echo >> out.txt && head -1 /proc/self/uid_map >> out.txt && (test -e ${hostMarker} && echo host-visible || echo host-hidden) >> out.txt && (wget -q -T 3 -O- http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && echo net-yes || echo net-no) >> out.txt && (cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max) >> out.txt && (ls /sys/fs/cgroup /sys/fs/cgroup/* 2>/dev/null | grep -c -e corral -e docker -e kubepods || true) >> out.txt`,
            'FROM busybox',
            'COPY --from=builder /src /app',
            // An image no FROM names, copied from by name: provided to the builder like a base.
            'COPY --from=busybox /bin/busybox /app/bb',
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
        assert.match(logs, /(?:STEP|Step) \d+\/\d+ ?: COPY --from=builder/);

        const out = await runInNewSandbox(t, alice.key, 'built', image, 'pwd; sh ./app.sh; cat /app/out.txt; stat -c %u:%g /app/out.txt /app; test -x /app/bb && echo bb-copied');
        const lines = out.trim().split('\n');
        assert.equal(lines[0], '/app');
        assert.equal(lines[1], 'app-ran');
        assert.equal(lines[2], 'hello from build');
        assert.equal(lines[3]?.trim(), 'lo', 'a RUN step has only loopback');
        // On both drivers root in the build is host id 0x71000000, not host root: the docker driver
        // builds with buildah too (the engine's builder is its fallback where buildah cannot run).
        assert.deepEqual(lines[4]?.trim().split(/\s+/), ['0', String(0x7100_0000), '65536']);
        assert.equal(lines[5], 'host-hidden');
        assert.equal(lines[6], 'net-no');
        assert.equal(lines[7], String(512 * 1024 ** 2), 'the memory limit applies to RUN steps');
        assert.equal(lines[8], '0', 'a RUN step sees no cgroup but its own (no sandbox\'s, no engine\'s)');
        // What the build's root made is root's in the image, not the build's host id.
        assert.deepEqual(lines.slice(9), ['0:0', '0:0', 'bb-copied']);
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

      it('FROM a private registry image: refused without credentials, built with the owner\'s saved ones, never lent to a user without them', async () => {
        // A user of its own: credentials saved here would serve the other cases' users too.
        const carol = await t.createUser('carol');
        const dockerfile = { Dockerfile: 'FROM 127.0.0.1:5001/private/busybox:latest\nRUN echo private-ok > /ok\n' };
        const refused = await build(carol.key, 'priv', 'v1', dockerfile);
        assert.equal(refused.status, 'FAILED');
        assert.match(refused.errorMessage ?? '', /FROM 127\.0\.0\.1:5001\/private\/busybox/);
        const saved = await t.request('POST', '/api/v1/template/registry-credentials', { key: carol.key, body: { name: 'private', server: '127.0.0.1:5001', username: 'corral', password: 'corral-secret' } });
        assert.equal(saved.statusCode, 201, saved.body);
        const built = await build(carol.key, 'priv', 'v2', dockerfile);
        assert.equal(built.status, 'COMPLETED', built.errorMessage ?? '');
        // Bob has no credentials: the copy carol's build pulled is not his to build on.
        const borrowed = await build(bob.key, 'priv', 'v1', dockerfile);
        assert.equal(borrowed.status, 'FAILED', 'a user without credentials builds on a private image another pulled');
        assert.match(borrowed.errorMessage ?? '', /FROM 127\.0\.0\.1:5001\/private\/busybox/);
        assert.equal((await t.request('DELETE', '/api/v1/images/priv/v2', { key: carol.key })).statusCode, 200);
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

      /** Polls a build to its end. */
    const finished = (key: string, id: string): Promise<BuildStatus> =>
      eventually(async () => {
        const status = (await t.request('GET', `/api/v1/images/build/${id}`, { key })).json<BuildStatus>();
        return ['COMPLETED', 'FAILED'].includes(status.status) ? status : undefined;
      }, 300_000, `build ${id}`);

    it('copies images from a registry (source_image, bulk too), a private one with the user\'s credentials; PATCH /images renames; vm-build answers the image', async () => {
      const one = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { source_image: '127.0.0.1:5000/corral/busybox:latest', image_name: 'copied', image_tag: 'v1' } });
      assert.equal(one.statusCode, 201, one.body);
      const single = one.json<{ build_id: string; upload_url: string | null; fullImagePath: string }>();
      assert.equal(single.upload_url, '', 'a transfer has no context to upload');
      assert.equal(single.fullImagePath, `corral.local/${alice.id}/copied:v1`);
      const copied = await finished(alice.key, single.build_id);
      assert.equal(copied.status, 'COMPLETED', copied.errorMessage ?? '');

      // Bulk: one private source without credentials (refused by its registry, and the build says so), one bad reference.
      const bulk = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { source_image: '127.0.0.1:5001/private/busybox:latest, Not A Ref!' } });
      assert.equal(bulk.statusCode, 201, bulk.body);
      const { results, failed } = bulk.json<{ results: { sourceImage: string; success: boolean; buildId: string | null; error: string | null }[]; failed: unknown[] }>();
      assert.deepEqual(results.map((r) => r.success), [true, false]);
      assert.equal(failed.length, 1);
      const refused = await finished(alice.key, results[0]!.buildId!);
      assert.equal(refused.status, 'FAILED');
      assert.match(refused.errorMessage ?? '', /127\.0\.0\.1:5001\/private\/busybox[\s\S]*(refused|unauthori[sz]ed|401|credentials)/i);
      // With the user's credentials for that registry the same transfer works.
      const cred = await t.request('POST', '/api/v1/template/registry-credentials', { key: alice.key, body: { name: 'private', server: '127.0.0.1:5001', username: 'corral', password: 'corral-secret' } });
      assert.equal(cred.statusCode, 201, cred.body);
      const again = await t.request('POST', '/api/v1/images/build', { key: alice.key, body: { source_image: '127.0.0.1:5001/private/busybox:latest', image_name: 'private-copy', image_tag: 'v1' } });
      assert.equal(again.statusCode, 201, again.body);
      const privateCopy = await finished(alice.key, again.json<{ build_id: string }>().build_id);
      assert.equal(privateCopy.status, 'COMPLETED', privateCopy.errorMessage ?? '');

      // PATCH /images: one rename succeeds, an image the caller lacks fails alone.
      const patch = await t.request('PATCH', '/api/v1/images', {
        key: alice.key,
        body: {
          updates: [
            { source: { owner: { type: 'personal' }, name: 'copied', tag: 'v1' }, set: { tag: 'v2' } },
            { source: { reference: 'missing:v1' }, set: { visibility: 'PRIVATE' } },
          ],
        },
      });
      assert.equal(patch.statusCode, 200, patch.body);
      const updated = patch.json<{ success: boolean; results: { success: boolean; after: { tag: string } | null; error: { code: string } | null }[] }>();
      assert.equal(updated.success, false);
      assert.equal(updated.results[0]?.success, true);
      assert.equal(updated.results[0]?.after?.tag, 'v2');
      assert.equal(updated.results[1]?.error?.code, 'IMAGE_NOT_FOUND');
      const renamed = `corral.local/${alice.id}/copied:v2`;
      const old = await t.request('POST', '/api/v1/sandbox', { key: alice.key, body: { name: 'old-name', docker_image: `corral.local/${alice.id}/copied:v1` } });
      assert.equal(old.statusCode, 404, old.body);
      const vm = await t.request('POST', '/api/v1/images/copied/v2/vm-build', { key: alice.key, body: {} });
      assert.equal(vm.statusCode, 200, vm.body);
      assert.equal(vm.json<{ fullImagePath: string }>().fullImagePath, renamed);
      assert.equal((await t.request('POST', '/api/v1/images/copied/v2/vm-build', { key: bob.key, body: {} })).statusCode, 404);

      // The renamed copy runs for its owner.
      assert.equal((await runInNewSandbox(t, alice.key, 'copied', renamed, 'echo copied-ran')).trim(), 'copied-ran');
    });

    it('fails a build that writes past the build disk, naming the setting, and builds the owner\'s next one', async () => {
        // 300 MiB into a 256 MiB build disk.
        const full = await build(bob.key, 'toobig', 'v1', { Dockerfile: 'FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count=300\n' });
        assert.equal(full.status, 'FAILED');
        assert.match(full.errorMessage ?? '', /ran out of the build disk \(0\.25 GiB, CORRAL_IMAGE_BUILD_DISK_GB\) at STEP 2\/2: RUN dd/);
        assert.match(full.failedStep ?? '', /RUN dd if=\/dev\/zero/);
        const next = await build(bob.key, 'small', 'v1', { Dockerfile: 'FROM busybox\nRUN echo fits > /small\n' });
        assert.equal(next.status, 'COMPLETED', next.errorMessage ?? '');
      });

    it('reuses the steps of the owner\'s earlier build (the layer cache), never another user\'s; a USER\'s files are that user\'s', async () => {
        // The second RUN writes to what the first made in the WORKDIR: a cached layer's files are the build's own.
        // Then a USER: what a step of that user makes is that user's in the image.
        const files = { Dockerfile: 'FROM busybox\nWORKDIR /work\nRUN head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n" > stamp\nRUN cp stamp copy && echo more >> stamp\nRUN echo app:x:1234:1234::/tmp:/bin/sh >> /etc/passwd && echo app:x:1234: >> /etc/group\nUSER app\nRUN id -u > /tmp/who\n' };
        const first = await build(alice.key, 'cached', 'v1', files);
        const again = await build(alice.key, 'cached', 'v2', files);
        const other = await build(bob.key, 'cached', 'v1', files);
        for (const result of [first, again, other]) assert.equal(result.status, 'COMPLETED', result.errorMessage ?? '');
        const logs = async (key: string, id: string): Promise<string> => (await t.request('GET', `/api/v1/images/build/${id}/logs`, { key })).json<{ logs: string }>().logs;
        assert.equal((await logs(alice.key, again.id)).match(/Using cache/g)?.length, 6, 'every step after FROM comes from the cache');
        assert.doesNotMatch(await logs(bob.key, other.id), /Using cache/);
        const stamp = (key: string, image: string): Promise<string> => runInNewSandbox(t, key, 'stamp', image, 'cat /work/copy; echo; cat /work/stamp; stat -c %u /tmp/who; cat /tmp/who');
        const [a, b, c] = [await stamp(alice.key, first.fullImagePath), await stamp(alice.key, again.fullImagePath), await stamp(bob.key, other.fullImagePath)];
        assert.match(a, /^[0-9a-f]{32}\n[0-9a-f]{32}more\n1234\n1234\n$/);
        assert.equal(b, a, 'the cached build has the first build\'s files');
        assert.notEqual(c, a, 'another user\'s build ran its own steps');
      });

    it('reports the failing step and its output', async () => {
        const result = await build(alice.key, 'broken', 'v1', { Dockerfile: 'FROM busybox\nRUN echo first-step-ok\nRUN echo about-to-fail && exit 3\n' });
        assert.equal(result.status, 'FAILED');
        assert.match(result.failedStep ?? '', /RUN echo about-to-fail && exit 3/);
        assert.match(result.errorMessage ?? '', /about-to-fail/);
      });
    });
  }
}

/**
 * `corral images build <dir>|list|delete` against a real server with real buildah (the oci
 * driver): the log streams to stderr, the reference goes to stdout, a failing step says where it
 * failed; and what a context build refuses before anything is sent.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ListeningTestServer, imageBuildMissing, needNothingMissing, startImageBuildServer } from '@corral/server/testing';
import { runCli } from '../../testing/spawn-cli.js';

interface ImageRow {
  imageName: string;
  imageTag: string;
  status: string;
  fullImagePath: string | null;
}

const scratch = mkdtempSync(join(tmpdir(), 'corral-cli-build-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

function contextDir(name: string, files: Record<string, string>): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
  return dir;
}

describe('corral images build <dir> refusals (nothing sent)', () => {
  // An address nothing listens on: these fail before any request.
  const env = { CORRAL_API_URL: 'http://127.0.0.1:1', CORRAL_API_KEY: 'x' };

  it('needs --tag, an existing directory, and no preset-only flags', async () => {
    const dir = contextDir('refusals', { Dockerfile: 'FROM busybox\n' });
    const noTag = await runCli(['images', 'build', dir], env);
    assert.equal(noTag.code, 1);
    assert.match(noTag.stderr, /--tag name:tag/);
    const noDir = await runCli(['images', 'build', join(scratch, 'missing'), '--tag', 'a:b'], env);
    assert.equal(noDir.code, 1);
    assert.match(noDir.stderr, /no directory .*missing: give a build context directory/);
    const runtime = await runCli(['images', 'build', dir, '--tag', 'a:b', '--runtime', 'oci'], env);
    assert.match(runtime.stderr, /--runtime and --data-dir apply to the offline presets/);
    // "python" is a preset word only where no directory of that name exists.
    const preset = await runCli(['images', 'build', 'python', '-f', 'x.Dockerfile'], env);
    assert.match(preset.stderr, /-f and --team apply to context builds; "python" is an offline preset/);
  });
});

describe('corral images build|list|delete through the images API (real buildah)', { timeout: 600_000 }, () => {
  let server: ListeningTestServer | undefined;
  const missing = imageBuildMissing();
  before(async () => {
    if (missing === undefined) server = await startImageBuildServer('cli-img', { imageBuildMemoryMb: 512, imageBuildCpus: 1 });
  });
  after(async () => server?.close());

  it('builds a context with -f, streams the log, prints the reference; lists and deletes it; a failing RUN names its step', async (t) => {
    if (!needNothingMissing(t, missing) || !server) return;
    const user = await server.t.createUser('cli-builder');
    const env = { CORRAL_API_URL: server.url, CORRAL_API_KEY: user.key };
    const dir = contextDir('app', { 'hello.txt': 'hello from the context\n' });
    const dockerfile = join(contextDir('dockerfiles', { 'app.Dockerfile': 'FROM busybox AS a\nCOPY hello.txt /h\nFROM busybox\nCOPY --from=a /h /srv/h\n' }), 'app.Dockerfile');

    const built = await runCli(['images', 'build', dir, '-f', dockerfile, '--tag', 'cliapp:v1'], env);
    assert.equal(built.code, 0, built.stderr);
    assert.equal(built.stdout, `corral.local/${user.id}/cliapp:v1\n`);
    assert.match(built.stderr, /\[2\/2\] STEP 2\/2: COPY --from=a \/h \/srv\/h/);

    const listed = await runCli(['images', 'list', '--output', 'json'], env);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = (JSON.parse(listed.stdout) as { data: ImageRow[] }).data;
    assert.deepEqual(
      rows.map((r) => [r.imageName, r.imageTag, r.status, r.fullImagePath]),
      [['cliapp', 'v1', 'COMPLETED', `corral.local/${user.id}/cliapp:v1`]],
    );
    const table = await runCli(['images', 'list'], env);
    assert.match(table.stdout, /^IMAGE\s+NAME\s+STATUS\s+OWNER\s+SIZE\s+CREATED\n/);
    assert.match(table.stdout, new RegExp(`corral\\.local/${user.id}/cliapp:v1\\s+cliapp:v1\\s+COMPLETED\\s+personal`));

    const failed = await runCli(['images', 'build', contextDir('bad', { Dockerfile: 'FROM busybox\nRUN echo about-to-fail && false\n' }), '--tag', 'clibad:v1', '--quiet'], env);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /ended FAILED at STEP 2\/2: RUN echo about-to-fail && false\. Fix that step/);
    assert.match(failed.stderr, /about-to-fail/);

    const deleted = await runCli(['images', 'delete', 'cliapp:v1'], env);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, 'Image cliapp:v1 deleted\n');
    const again = await runCli(['images', 'delete', 'cliapp:v1'], env);
    assert.equal(again.code, 2);
    // Failed builds are not images: the list is empty again.
    const after = JSON.parse((await runCli(['images', 'list', '--output', 'json'], env)).stdout) as { data: ImageRow[] };
    assert.deepEqual(after.data, []);
  });
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli } from '../../testing/spawn-cli.js';

interface ImageJson {
  reference: string;
  id: string;
  source: string;
}

// The oci driver's store needs no daemon: the commands work on a data dir of their own.
describe('corral images build <preset>|import|list --local on the oci store of a data dir', { timeout: 300_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-cli-images-'));
  const target = ['--runtime', 'oci', '--data-dir', dataDir, '--output', 'json'];
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it('builds busybox, imports a rootfs under a tag, lists both, and refuses an untagged rootfs', async () => {
    const built = await runCli(['images', 'build', 'busybox', ...target]);
    assert.equal(built.code, 0, built.stderr);
    assert.deepEqual(
      { ...(JSON.parse(built.stdout) as ImageJson), id: '' },
      { reference: 'docker.io/library/busybox:latest', id: '', source: 'built busybox' },
    );

    // A rootfs tarball is any tar that is not an image archive.
    const tree = join(dataDir, 'tree');
    mkdirSync(join(tree, 'etc'), { recursive: true });
    writeFileSync(join(tree, 'etc', 'hostname'), 'cli\n');
    const rootfs = join(dataDir, 'rootfs.tar');
    execFileSync('tar', ['-C', tree, '-cf', rootfs, '.']);
    const untagged = await runCli(['images', 'import', rootfs, ...target]);
    assert.equal(untagged.code, 1);
    assert.match(untagged.stderr, /rootfs tarball: give it a name with --tag/);
    const imported = await runCli(['images', 'import', rootfs, '--tag', 'corral-test/cli:1', ...target]);
    assert.equal(imported.code, 0, imported.stderr);
    assert.equal((JSON.parse(imported.stdout) as ImageJson).source, 'rootfs');

    const listed = await runCli(['images', 'list', ...target]);
    assert.equal(listed.code, 0, listed.stderr);
    const { images } = JSON.parse(listed.stdout) as { images: ImageJson[] };
    assert.deepEqual(images.map((image) => image.reference).sort(), ['docker.io/corral-test/cli:1', 'docker.io/library/busybox:latest']);

    // --local reads the store of the configured runtime (CORRAL_RUNTIME); without it, list asks the server.
    const local = await runCli(['images', 'list', '--local', '--data-dir', dataDir, '--output', 'json'], { CORRAL_RUNTIME: 'oci' });
    assert.equal(local.code, 0, local.stderr);
    assert.deepEqual((JSON.parse(local.stdout) as { images: ImageJson[] }).images.map((image) => image.reference).sort(), images.map((image) => image.reference).sort());

    const none = await runCli(['images', 'list', '--runtime', 'none']);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /keeps no images/);
  });
});

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { buildOciLayout } from '../../images/oci.js';
import { RECIPE_LABEL } from '../../images/recipes.js';
import { buildRootfs } from '../../images/rootfs.js';
import { absent, containerOutput, missingComponents, removeImages, runInImage, testRef } from '../../images/test-support.js';
import { detectArchiveFormat } from '../image-archive.js';
import { importOciArchive, importRootfsToDocker, listLocalImages } from './docker-images.js';

const docker = new Docker();
const missing = await missingComponents(['busybox', 'umoci', 'skopeo'], true);

describe('Docker import of offline images', { concurrency: false }, () => {
  const refs: string[] = [];
  let scratch = '';
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'corral-import-test-'));
  });
  after(async () => {
    if (missing === undefined) await removeImages(docker, refs);
    await rm(scratch, { recursive: true, force: true });
  });

  test('a busybox rootfs imported into Docker runs `echo hi`, with the given config', async (t) => {
    if (absent(t, missing)) return;
    const rootfs = await buildRootfs('busybox');
    const ref = testRef('import');
    refs.push(ref);
    const id = await importRootfsToDocker(rootfs.cachedPath, ref, { cmd: ['sh'], labels: { [RECIPE_LABEL]: rootfs.key } });
    assert.match(id, /^sha256:[0-9a-f]{64}$/);
    const info = await docker.getImage(ref).inspect();
    assert.deepEqual(info.Config.Cmd, ['sh']);
    assert.ok(info.Config.Env?.some((entry) => entry.startsWith('PATH=')));
    assert.equal(info.Config.Labels?.[RECIPE_LABEL], rootfs.key);
    const run = await runInImage(docker, ref, ['echo', 'hi']);
    assert.equal(run.code, 0);
    assert.equal(run.output.trim(), 'hi');
    const listed = await listLocalImages();
    assert.ok(listed.some((image) => image.id === id && image.tags.includes(ref)));
  });

  test('an OCI layout (directory and tarball) built with umoci loads and runs', async (t) => {
    if (absent(t, missing)) return;
    const rootfs = await buildRootfs('busybox');
    const layout = join(scratch, 'layout');
    await buildOciLayout(rootfs.cachedPath, layout, 'v1', { cmd: ['sh', '-c', 'echo from-oci-cmd'] });
    assert.equal(await detectArchiveFormat(layout), 'oci-dir');
    const dirRef = testRef('oci-dir');
    refs.push(dirRef);
    const fromDir = await importOciArchive(layout, dirRef, { ref: 'v1' });
    assert.equal(fromDir.format, 'oci-dir');
    const runDir = await runInImage(docker, dirRef, ['echo', 'hi']);
    assert.equal(runDir.output.trim(), 'hi');

    const archive = join(scratch, 'layout.tar');
    await promisify(execFile)('tar', ['-C', layout, '-cf', archive, '.']);
    assert.equal(await detectArchiveFormat(archive), 'oci-archive');
    const archiveRef = testRef('oci-archive');
    refs.push(archiveRef);
    const fromArchive = await importOciArchive(archive, archiveRef);
    assert.equal(fromArchive.format, 'oci-archive');
    const info = await docker.getImage(archiveRef).inspect();
    assert.deepEqual(info.Config.Cmd, ['sh', '-c', 'echo from-oci-cmd']);
    const runDefault = await docker.createContainer({ Image: archiveRef, Tty: true, HostConfig: { NetworkMode: 'none' } });
    try {
      await runDefault.start();
      await runDefault.wait();
      assert.equal((await containerOutput(runDefault)).trim(), 'from-oci-cmd');
    } finally {
      await runDefault.remove({ force: true });
    }
  });

  test('a `docker save` archive loads back under its name and under a new tag', async (t) => {
    if (absent(t, missing)) return;
    const rootfs = await buildRootfs('busybox');
    const original = testRef('saved');
    refs.push(original);
    await importRootfsToDocker(rootfs.cachedPath, original);
    const archive = join(scratch, 'saved.tar');
    await pipeline(await docker.getImage(original).get(), createWriteStream(archive));
    await removeImages(docker, [original]);
    assert.equal(await detectArchiveFormat(archive), 'docker-archive');
    const retag = testRef('retagged');
    refs.push(retag);
    const loaded = await importOciArchive(archive, retag);
    assert.equal(loaded.format, 'docker-archive');
    assert.ok(loaded.references.includes(original), `references: ${loaded.references.join(', ')}`);
    const run = await runInImage(docker, retag, ['sh', '-c', 'echo $((6 * 7))']);
    assert.equal(run.output.trim(), '42');
  });

  test('an archive that is neither format is refused with a reason', async (t) => {
    if (absent(t, missing)) return;
    const bogus = join(scratch, 'bogus.tar');
    await promisify(execFile)('tar', ['-C', scratch, '-cf', bogus, '--files-from', '/dev/null']);
    await assert.rejects(importOciArchive(bogus), /neither a docker-save archive/);
  });
});

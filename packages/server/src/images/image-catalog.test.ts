import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { createRuntimeImages } from '../runtime/create-runtime.js';
import { DEFAULT_TAGS, buildImage, importImage } from './image-catalog.js';
import { buildOciLayout } from './oci.js';
import { RECIPE_LABEL } from './recipes.js';
import { buildRootfs, rootfsKey } from './rootfs.js';
import { absent, missingComponents, removeImages, runInImage, testRef } from './test-support.js';

const docker = new Docker();

describe('the image catalog, through each driver\'s RuntimeImages', { concurrency: false }, () => {
  let dataDir = '';
  const refs: string[] = [];
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'corral-catalog-test-'));
  });
  after(async () => {
    if ((await missingComponents([], true)) === undefined) await removeImages(docker, refs);
    await rm(dataDir, { recursive: true, force: true });
  });

  test('the none runtime keeps no images', async () => {
    await assert.rejects(createRuntimeImages({ runtime: 'none', dataDir }), /keeps no images/);
  });

  // The python rootfs takes ~20-40 s to build once; after that the cached tarball makes this quick.
  test('a python image built into docker runs python 3.11 and the coreutils sandboxes use, labelled with its recipe', { timeout: 300_000 }, async (t) => {
    if (absent(t, await missingComponents(['mmdebstrap'], true))) return;
    const tag = testRef('python');
    refs.push(tag);
    const image = await buildImage('python', tag, await createRuntimeImages({ runtime: 'docker', dataDir }));
    assert.deepEqual({ reference: image.reference, source: image.source }, { reference: tag, source: 'built python' });
    assert.equal((await docker.getImage(tag).inspect()).Config.Labels?.[RECIPE_LABEL], await rootfsKey('python'));
    const python = await runInImage(docker, tag, ['python3', '-c', 'import sys; print(1, sys.version_info[:2])']);
    assert.equal(python.code, 0, python.output);
    assert.equal(python.output.trim(), '1 (3, 11)');
    const tools = await runInImage(docker, tag, [
      'sh',
      '-c',
      'mkdir -p /tmp/a/b && echo x > /tmp/a/b/f && stat -c %s /tmp/a/b/f && cat /tmp/a/b/f && nohup true </dev/null >/dev/null 2>&1 && tail -n1 /etc/passwd >/dev/null && python -c "print(2)"',
    ]);
    assert.equal(tools.code, 0, tools.output);
    assert.deepEqual(tools.output.trim().split('\n'), ['2', 'x', '2']);
  });

  test('docker: a rootfs tarball imports under its tag and is listed', async (t) => {
    if (absent(t, await missingComponents(['busybox'], true))) return;
    const images = await createRuntimeImages({ runtime: 'docker', dataDir });
    const rootfs = await buildRootfs('busybox');
    await assert.rejects(importImage(rootfs.cachedPath, undefined, images), /rootfs tarball: give it a name with --tag/);
    const tag = testRef('catalog');
    refs.push(tag);
    const image = await importImage(rootfs.cachedPath, tag, images);
    assert.equal(image.source, 'rootfs');
    assert.match(image.id, /^sha256:/);
    assert.ok((await images.list()).some((listed) => listed.reference === tag && listed.id === image.id));
    assert.equal((await runInImage(docker, tag, ['echo', 'hi'])).output.trim(), 'hi');
  });

  test('oci: built and imported images (rootfs and OCI layout) land in the data dir\'s store', async (t) => {
    if (absent(t, await missingComponents(['busybox', 'umoci'], false))) return;
    const images = await createRuntimeImages({ runtime: 'oci', dataDir });
    const built = await buildImage('busybox', DEFAULT_TAGS.busybox, images);
    assert.deepEqual({ reference: built.reference, source: built.source }, { reference: 'docker.io/library/busybox:latest', source: 'built busybox' });
    const rootfs = await buildRootfs('busybox');
    const layout = join(dataDir, 'layout.tar');
    await buildOciLayout(rootfs.cachedPath, join(dataDir, 'layout'), 'v1');
    await promisify(execFile)('tar', ['-C', join(dataDir, 'layout'), '-cf', layout, '.']);
    const fromLayout = await importImage(layout, 'corral-test/layout:v1', images);
    assert.equal(fromLayout.source, 'oci-archive');
    const listed = (await images.list()).map((image) => `${image.reference} ${image.source}`).sort();
    assert.deepEqual(listed, ['docker.io/corral-test/layout:v1 oci-archive', 'docker.io/library/busybox:latest rootfs']);
  });
});

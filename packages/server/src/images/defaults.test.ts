import assert from 'node:assert/strict';
import { test } from 'node:test';
import Docker from 'dockerode';
import { DEFAULT_IMAGES, ensureDefaultImages } from './defaults.js';
import { importRootfsToDocker } from './docker-images.js';
import { RECIPE_LABEL } from './recipes.js';
import { buildRootfs } from './rootfs.js';
import { absent, missingComponents, removeImages, runInImage, testRef } from './test-support.js';

const docker = new Docker();

// The python rootfs takes ~20-40 s to build once; after that the cached tarball (or the image already
// in the engine) makes this test take about a second.
test('ensureDefaultImages provides python:3.11-slim (python 3.11 and the coreutils sandboxes use) and busybox', { timeout: 300_000 }, async (t) => {
  if (absent(t, await missingComponents(['busybox', 'mmdebstrap'], true))) return;
  const results = await ensureDefaultImages();
  assert.deepEqual(results.map((result) => result.tag).sort(), DEFAULT_IMAGES.map((image) => image.tag).sort());

  const python = await runInImage(docker, 'python:3.11-slim', ['python3', '-c', 'import sys; print(1, sys.version_info[:2])']);
  assert.equal(python.code, 0, python.output);
  assert.equal(python.output.trim(), '1 (3, 11)');
  const tools = await runInImage(docker, 'python:3.11-slim', [
    'sh',
    '-c',
    'mkdir -p /tmp/a/b && echo x > /tmp/a/b/f && stat -c %s /tmp/a/b/f && cat /tmp/a/b/f && nohup true </dev/null >/dev/null 2>&1 && tail -n1 /etc/passwd >/dev/null && python -c "print(2)"',
  ]);
  assert.equal(tools.code, 0, tools.output);
  assert.deepEqual(tools.output.trim().split('\n'), ['2', 'x', '2']);

  const busybox = await runInImage(docker, 'busybox:latest', ['echo', 'hi']);
  assert.equal(busybox.output.trim(), 'hi');

  // Idempotent: a second call finds both images current.
  const again = await ensureDefaultImages();
  for (const result of again) {
    assert.equal(result.action, 'present');
    const labels = (await docker.getImage(result.tag).inspect()).Config.Labels ?? {};
    if (result.key !== undefined) assert.equal(labels[RECIPE_LABEL], result.key);
  }
});

test('ensureDefaultImages builds a missing image, replaces one from an older recipe and keeps a foreign one', async (t) => {
  if (absent(t, await missingComponents(['busybox'], true))) return;
  const tag = testRef('default');
  const images = [{ tag, kind: 'busybox' as const }];
  const ids: string[] = [];
  const track = async (): Promise<void> => {
    ids.push((await docker.getImage(tag).inspect()).Id);
  };
  try {
    const [built] = await ensureDefaultImages({ images });
    await track();
    assert.equal(built?.action, 'built');
    assert.equal((await ensureDefaultImages({ images }))[0]?.action, 'present');

    const rootfs = await buildRootfs('busybox');
    await importRootfsToDocker(rootfs.cachedPath, tag, { labels: { [RECIPE_LABEL]: 'busybox-v0-stale' } });
    const staleId = (await docker.getImage(tag).inspect()).Id;
    const [rebuilt] = await ensureDefaultImages({ images });
    await track();
    // The replaced image is removed, not left dangling.
    await assert.rejects(docker.getImage(staleId).inspect(), (error: { statusCode?: number }) => error.statusCode === 404);
    assert.equal(rebuilt?.action, 'rebuilt');
    assert.equal((await docker.getImage(tag).inspect()).Config.Labels?.[RECIPE_LABEL], rootfs.key);

    await importRootfsToDocker(rootfs.cachedPath, tag, { labels: { vendor: 'elsewhere' } });
    await track();
    const [kept] = await ensureDefaultImages({ images });
    assert.equal(kept?.action, 'present');
    assert.equal((await docker.getImage(tag).inspect()).Config.Labels?.['vendor'], 'elsewhere');
  } finally {
    await removeImages(docker, [tag, ...ids]);
  }
});

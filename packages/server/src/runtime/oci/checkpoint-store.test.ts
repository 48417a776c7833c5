import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CheckpointStore } from './checkpoint-store.js';
import type { CheckpointManifest } from './checkpoint-store.js';

function manifest(ref: string): CheckpointManifest {
  return {
    ref,
    image: 'busybox:latest',
    imageDigest: 'sha256:0',
    layers: ['a'],
    layer: 'a',
    sizeBytes: 1,
    config: { env: [], entrypoint: [], cmd: [], workingDir: '/', user: '' },
    memory: { sizeBytes: 3, agent: { socketInode: 7 } },
    createdAt: new Date().toISOString(),
  };
}

describe('checkpoint store: memory images', () => {
  const roots: string[] = [];
  after(async () => {
    for (const root of roots) await rm(root, { recursive: true, force: true });
  });
  const store = async (): Promise<CheckpointStore> => {
    const root = await mkdtemp(join(tmpdir(), 'corral-ckstore-'));
    roots.push(root);
    return new CheckpointStore(root);
  };
  /** A CRIU image directory for `ref`, as a capture leaves it before keepMemory(). */
  const image = async (s: CheckpointStore, ref: string): Promise<string> => {
    const dir = join(s.root, 'tmp', `image-${ref}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'pages-1.img'), 'abc');
    return dir;
  };

  it('keeps an image under its ref beside the manifest, and deletes both together', async () => {
    const s = await store();
    await s.keepMemory('ck1', await image(s, 'ck1'));
    await s.save(manifest('ck1'));
    assert.ok(existsSync(join(s.memoryDir('ck1'), 'pages-1.img')));
    assert.deepEqual((await s.get('ck1'))?.memory, { sizeBytes: 3, agent: { socketInode: 7 } });
    await s.delete('ck1');
    assert.equal(existsSync(s.memoryDir('ck1')), false);
    assert.equal(await s.get('ck1'), undefined);
    await s.delete('ck1');
  });

  it('refuses refs that are not one path component', async () => {
    const s = await store();
    assert.throws(() => s.memoryDir('../x'), /invalid checkpoint ref/);
  });

  it('removes images no manifest names once older than an hour; keeps recent ones and those with a manifest', async () => {
    const s = await store();
    for (const ref of ['orphan', 'recent', 'kept']) await s.keepMemory(ref, await image(s, ref));
    await s.save(manifest('kept'));
    const old = new Date(Date.now() - 2 * 3_600_000);
    for (const ref of ['orphan', 'kept']) await utimes(s.memoryDir(ref), old, old);
    await s.removeStaleCaptures();
    assert.equal(existsSync(s.memoryDir('orphan')), false);
    assert.ok(existsSync(s.memoryDir('recent')), 'a capture may be between keeping its image and saving its manifest');
    assert.ok(existsSync(s.memoryDir('kept')));
  });
});

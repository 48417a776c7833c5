import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { LayerRejectedError } from './layer-check.js';
import { unpackLayer } from './layer-unpack.js';

/** One entry of a hand-made layer. */
interface Entry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  content?: string | Buffer;
  linkname?: string;
}

async function makeLayer(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    const type = e.type ?? 'file';
    if (type === 'file') pack.entry({ name: e.name, mode: 0o644 }, e.content ?? '');
    else if (type === 'directory') pack.entry({ name: e.name, type, mode: 0o755 });
    else pack.entry({ name: e.name, type, linkname: e.linkname ?? '' });
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return gzipSync(Buffer.concat(chunks));
}

describe('layer unpack against hostile layers', { concurrency: 1 }, () => {
  let root: string;
  let layers: string;
  let outside: string;
  let count = 0;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'corral-layer-'));
    layers = join(root, 'layers');
    outside = join(root, 'outside');
    mkdirSync(layers);
    mkdirSync(outside);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  /** Places sentinels in the shared layer cache and outside it, unpacks, and checks they survive. */
  async function unpackHostile(entries: Entry[], reason: RegExp, maxBytes?: number): Promise<void> {
    writeFileSync(join(layers, 'sentinel'), 'keep');
    mkdirSync(join(layers, 'other-layer'), { recursive: true });
    writeFileSync(join(layers, 'other-layer', 'file'), 'keep');
    writeFileSync(join(outside, 'sentinel'), 'keep');
    const tarPath = join(root, `layer-${count}.tar.gz`);
    writeFileSync(tarPath, await makeLayer(entries));
    const dest = join(layers, `layer-${count++}`);
    await assert.rejects(unpackLayer(tarPath, dest, maxBytes === undefined ? {} : { maxBytes }), (e: unknown) => {
      assert.ok(e instanceof LayerRejectedError, `expected a LayerRejectedError, got ${String(e)}`);
      assert.match(e.message, reason);
      return true;
    });
    assert.equal(readFileSync(join(layers, 'sentinel'), 'utf8'), 'keep', 'the shared layer cache survives');
    assert.equal(readFileSync(join(layers, 'other-layer', 'file'), 'utf8'), 'keep', 'other layers survive');
    assert.deepEqual(readdirSync(outside), ['sentinel'], 'nothing was written outside the layer');
    assert.equal(readFileSync(join(outside, 'sentinel'), 'utf8'), 'keep');
    assert.deepEqual(readdirSync(layers).sort(), ['other-layer', 'sentinel'], 'nothing half-extracted is left in the cache');
  }

  it('refuses the whiteout .wh.. (it names the layer directory itself)', async () => {
    await unpackHostile([{ name: 'a/', type: 'directory' }, { name: '.wh..' }], /malformed whiteout/);
  });

  it('refuses the whiteout .wh... (it names the shared layer cache)', async () => {
    await unpackHostile([{ name: '.wh...' }], /malformed whiteout/);
  });

  it('refuses a .wh. directory component (".wh." followed by "/")', async () => {
    await unpackHostile([{ name: 'a/.wh./x' }], /below a whiteout/);
  });

  it('refuses .. components and absolute names', async () => {
    await unpackHostile([{ name: 'a/../../outside/evil' }], /\.\. component/);
    await unpackHostile([{ name: `${outside}/evil` }], /absolute path/);
  });

  it('refuses entries below a symlink of the layer, absolute or relative', async () => {
    await unpackHostile([{ name: 'link', type: 'symlink', linkname: outside }, { name: 'link/evil', content: 'x' }], /below the symlink/);
    await unpackHostile([{ name: 'here', type: 'symlink', linkname: '.' }, { name: 'here/.wh.sentinel' }], /below the symlink/);
    await unpackHostile([{ name: 'link', type: 'symlink', linkname: outside }, { name: 'link/.wh.sentinel' }], /below the symlink/);
  });

  it('refuses symlinks and hard links that leave the layer', async () => {
    await unpackHostile([{ name: 'a/', type: 'directory' }, { name: 'a/up', type: 'symlink', linkname: '../../outside' }], /points outside the layer/);
    await unpackHostile([{ name: 'hard', type: 'link', linkname: '../outside/sentinel' }], /\.\. component/);
    await unpackHostile([{ name: 'hard', type: 'link', linkname: join(outside, 'sentinel') }], /absolute path/);
  });

  it('refuses a layer larger than the cap, leaving nothing behind', async () => {
    await unpackHostile([{ name: 'big', content: Buffer.alloc(2 * 1024 * 1024) }], /larger than 1048576 bytes/, 1024 * 1024);
  });

  it('still unpacks an ordinary layer: symlinks inside, absolute symlinks, hard links, whiteouts', async () => {
    const tarPath = join(root, 'good.tar.gz');
    writeFileSync(
      tarPath,
      await makeLayer([
        { name: './', type: 'directory' },
        { name: './bin/', type: 'directory' },
        { name: './bin/busybox', content: 'bb' },
        { name: './bin/sh', type: 'symlink', linkname: 'busybox' },
        { name: './bin/ls', type: 'link', linkname: './bin/busybox' },
        { name: './usr/bin/', type: 'directory' },
        { name: './usr/bin/env', type: 'symlink', linkname: '/bin/busybox' },
        { name: './usr/bin/up', type: 'symlink', linkname: '../../bin/sh' },
        { name: './etc/.wh.gone' },
        { name: './var/.wh..wh..opq' },
      ]),
    );
    const dest = join(layers, 'good');
    assert.equal((await unpackLayer(tarPath, dest)).created, true);
    assert.equal(readlinkSync(join(dest, 'usr/bin/env')), '/bin/busybox');
    assert.equal(readlinkSync(join(dest, 'usr/bin/up')), '../../bin/sh');
    assert.equal(lstatSync(join(dest, 'bin/ls')).ino, lstatSync(join(dest, 'bin/busybox')).ino);
    assert.ok(lstatSync(join(dest, 'etc/gone')).isCharacterDevice());
    assert.equal(existsSync(join(dest, 'etc/.wh.gone')), false);
    assert.equal(existsSync(join(dest, 'var/.wh..wh..opq')), false);
  });
});

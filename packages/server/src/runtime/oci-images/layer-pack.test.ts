import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findOverlayMarkers, packOverlayLayer } from './layer-pack.js';
import { unpackLayer } from './layer-unpack.js';

const root = process.getuid?.() === 0;

/** An upper directory as overlayfs leaves it: files, a hard link, a symlink, a whiteout, an opaque directory, odd names. */
function makeUpper(dir: string): void {
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'hosts'), 'per-sandbox\n');
  mkdirSync(join(dir, 'work space', 'sub'), { recursive: true });
  writeFileSync(join(dir, 'work space', 'sub', 'data.txt'), 'kept\n');
  linkSync(join(dir, 'work space', 'sub', 'data.txt'), join(dir, 'work space', 'hard'));
  symlinkSync('sub/data.txt', join(dir, 'work space', 'link'));
  // A link whose target exists only inside the image (as /etc/ssl/certs has them): never followed.
  symlinkSync('/nonexistent/on/this/host.pem', join(dir, 'dangling'));
  execFileSync('mknod', [join(dir, 'work space', 'gone file'), 'c', '0', '0']);
  execFileSync('mknod', [join(dir, 'bin-gone-é'), 'c', '0', '0']);
  execFileSync('mknod', [join(dir, 'new\nline'), 'c', '0', '0']);
  mkdirSync(join(dir, 'opaque'));
  writeFileSync(join(dir, 'opaque', 'new'), 'only this\n');
  execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(dir, 'opaque')]);
  // getfattr prints a name's non-ASCII bytes as they are, and its control characters escaped.
  mkdirSync(join(dir, 'opaqué\tdir'));
  execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(dir, 'opaqué\tdir')]);
  execFileSync('chown', ['1000:1001', join(dir, 'work space', 'sub', 'data.txt')]);
}

describe('packOverlayLayer', { skip: root ? undefined : 'needs root (mknod, trusted.* xattrs)' }, () => {
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'corral-layer-pack-'));
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('turns overlay whiteouts and opaque directories into OCI ones, leaves out what it is told to, and unpacks back to the same tree', async () => {
    const upper = join(scratch, 'upper');
    mkdirSync(upper);
    makeUpper(upper);
    const markers = await findOverlayMarkers(upper);
    assert.deepEqual(markers.whiteouts.sort(), ['bin-gone-é', 'new\nline', 'work space/gone file']);
    assert.deepEqual(markers.opaque.sort(), ['opaque', 'opaqué\tdir']);

    const tarball = join(scratch, 'layer.tar');
    const packed = await packOverlayLayer(upper, tarball, { exclude: ['etc/hosts'] });
    assert.match(packed.digest, /^sha256:[0-9a-f]{64}$/);
    const listing = execFileSync('tar', ['--list', '--verbose', '--numeric-owner', '--file', tarball], { encoding: 'utf8' });
    const names = execFileSync('tar', ['--list', '--file', tarball], { encoding: 'utf8' }).trim().split('\n');
    assert.ok(names.includes('./work space/.wh.gone file'), listing);
    assert.ok(names.includes('./.wh.bin-gone-é'), listing);
    assert.ok(names.includes('./opaque/.wh..wh..opq'), listing);
    assert.ok(names.includes('./opaqué\\tdir/.wh..wh..opq'), listing);
    assert.match(listing, /\.\/\.wh\.new\\nline/, 'a whiteout whose name has a newline');
    assert.ok(!names.includes('./etc/hosts'), 'excluded');
    assert.ok(!names.some((n) => n === './work space/gone file'), 'no character device is archived');
    assert.doesNotMatch(listing, /^c/m, 'no device nodes');

    // The same tree gives the same digest.
    assert.equal((await packOverlayLayer(upper, join(scratch, 'again.tar'), { exclude: ['etc/hosts'] })).digest, packed.digest);

    const back = join(scratch, 'back');
    await unpackLayer(tarball, back);
    assert.deepEqual((await findOverlayMarkers(back)).whiteouts.sort(), markers.whiteouts.sort());
    assert.deepEqual((await findOverlayMarkers(back)).opaque.sort(), ['opaque', 'opaqué\tdir']);
    assert.equal(readFileSync(join(back, 'work space', 'sub', 'data.txt'), 'utf8'), 'kept\n');
    assert.equal(lstatSync(join(back, 'work space', 'sub', 'data.txt')).uid, 1000);
    assert.equal(lstatSync(join(back, 'work space', 'hard')).ino, lstatSync(join(back, 'work space', 'sub', 'data.txt')).ino, 'hard link kept');
    assert.equal(readlinkSync(join(back, 'work space', 'link')), 'sub/data.txt');
    assert.equal(readlinkSync(join(back, 'dangling')), '/nonexistent/on/this/host.pem');
    assert.equal(readFileSync(join(back, 'opaque', 'new'), 'utf8'), 'only this\n');
    assert.equal(lstatSync(join(back, 'etc')).isDirectory(), true);
    assert.throws(() => lstatSync(join(back, 'etc', 'hosts')));
  });
});

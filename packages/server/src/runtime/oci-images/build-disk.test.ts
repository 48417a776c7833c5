import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BuildDisk } from './build-disk.js';

const MiB = 1024 ** 2;

/** Loop devices backed by `file`. */
function loopDevices(file: string): string[] {
  return execFileSync('losetup', ['--noheadings', '--output', 'NAME', '--associated', file], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

describe('BuildDisk', { skip: process.getuid?.() !== 0 ? 'needs root (mount)' : false }, () => {
  const root = mkdtempSync(join(tmpdir(), 'corral-build-disk-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('bounds what is written to its size, keeps what a build left when little is used, and starts empty after a full one', async () => {
    const disk = new BuildDisk(join(root, 'owner-a'), 64 * MiB);
    const target = join(root, 'mnt-a');
    mkdirSync(target);
    await disk.mount(target);
    writeFileSync(join(target, 'kept'), 'cache');
    await disk.unmount(target);
    await disk.mount(target);
    assert.equal(execFileSync('cat', [join(target, 'kept')], { encoding: 'utf8' }), 'cache', 'a lightly used disk keeps its content');
    assert.throws(() => execFileSync('dd', ['if=/dev/zero', `of=${join(target, 'big')}`, 'bs=1M', 'count=100'], { stdio: 'pipe' }), /No space left on device/);
    await disk.unmount(target);
    assert.equal(existsSync(join(root, 'owner-a')), false, 'a disk more than half full is deleted with its metadata');
    await disk.mount(target);
    assert.equal(existsSync(join(target, 'kept')), false, 'and the next build starts empty');
    await disk.unmount(target, true);
  });

  it('takes down a mount an earlier process left before mounting again, so the file system is never mounted twice', async () => {
    const dir = join(root, 'owner-b');
    const left = join(root, 'mnt-left');
    const next = join(root, 'mnt-next');
    mkdirSync(left);
    mkdirSync(next);
    await new BuildDisk(dir, 32 * MiB).mount(left);
    // A new process's view of the same owner: the earlier mount was never unmounted.
    const disk = new BuildDisk(dir, 32 * MiB);
    await disk.mount(next);
    assert.equal(loopDevices(join(dir, 'disk.img')).length, 1);
    assert.equal(spawnSync('mountpoint', ['-q', left]).status === 0, false, 'the leftover mount is gone');
    assert.equal(spawnSync('mountpoint', ['-q', next]).status, 0);
    await disk.unmount(next, true);
    assert.deepEqual(loopDevices(join(dir, 'disk.img')).length, 0);
  });
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lchown, link, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyUpper, precopyUpper, syncFrozen, writeLayerTar } from './checkpoint-capture.js';

const ROOT = process.getuid?.() === 0;

/** `tar --list --verbose` lines of `tarPath` as `{name: "type mode uid/gid"}`. */
function listing(tarPath: string): Map<string, string> {
  const out = execFileSync('tar', ['--list', '--verbose', '--numeric-owner', '--file', tarPath], { encoding: 'utf8' });
  const entries = new Map<string, string>();
  for (const line of out.trim().split('\n')) {
    const [mode, owner, , , , ...rest] = line.split(/\s+/);
    const name = rest.join(' ').replace(/ -> .*$/, '').replace(/ link to .*$/, '').replace(/^\.\//, '').replace(/\/$/, '');
    entries.set(name, `${mode} ${owner}`);
  }
  return entries;
}

/** Every entry under `root`: type, mode, owner, links, mtime, content hash or link target. */
async function signature(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const info = await lstat(join(root, path));
      const content = info.isFile() ? createHash('sha256').update(await readFile(join(root, path))).digest('hex') : info.isSymbolicLink() ? await readlink(join(root, path)) : '';
      const mtime = info.isDirectory() ? '' : String(Math.floor(info.mtimeMs));
      out.push(`${path} ${info.mode.toString(8)} ${info.uid}:${info.gid} ${info.nlink} ${info.rdev} ${mtime} ${content}`);
      if (info.isDirectory()) await walk(path);
    }
  };
  await walk('');
  return out;
}

describe('checkpoint capture: an overlay upper directory as an OCI layer', { skip: ROOT ? undefined : 'needs root (device nodes, trusted.* xattrs, chown)' }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'corral-capture-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('whiteouts become .wh. entries, opaque directories get .wh..wh..opq, owners shift back from the user namespace, per-sandbox files are left out, hard links, symlinks and holes are kept', async () => {
    const upper = join(dir, 'upper');
    const hostUid = 100000;
    await mkdir(join(upper, 'etc'), { recursive: true });
    await mkdir(join(upper, 'usr', 'sbin'), { recursive: true });
    await mkdir(join(upper, 'data'), { recursive: true });
    await writeFile(join(upper, 'etc', 'hosts'), '127.0.0.1 me\n');
    await writeFile(join(upper, 'etc', 'motd'), 'kept\n');
    execFileSync('mknod', ['-m', '0', join(upper, 'etc', 'group'), 'c', '0', '0']);
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(upper, 'usr', 'sbin')]);
    execFileSync('setfattr', ['-n', 'user.note', '-v', 'hello', join(upper, 'etc', 'motd')]);
    await writeFile(join(upper, 'usr', 'sbin', 'only'), 'new\n');
    await writeFile(join(upper, 'data', 'h1'), 'h\n');
    await link(join(upper, 'data', 'h1'), join(upper, 'data', 'h2'));
    await symlink('/etc/motd', join(upper, 'data', 'link'));
    const sparse = await open(join(upper, 'data', 'sparse'), 'w');
    await sparse.write('end', 64 * 1024 * 1024);
    await sparse.close();
    for (const path of ['', 'etc', 'etc/motd', 'etc/hosts', 'usr', 'usr/sbin', 'usr/sbin/only', 'data', 'data/link', 'data/sparse']) await lchown(join(upper, path), hostUid, hostUid);
    await lchown(join(upper, 'data', 'h1'), hostUid + 1234, hostUid + 2345);

    const staging = join(dir, 'staging');
    await copyUpper(upper, staging);
    const copied = await stat(join(staging, 'data', 'sparse'));
    assert.ok(copied.blocks * 512 < 1024 * 1024, `the copy keeps the sparse file's holes (${copied.blocks} blocks)`);
    const tarPath = join(dir, 'layer.tar');
    const result = await writeLayerTar(staging, tarPath, { exclude: ['etc/hosts'], userns: { hostUid, hostGid: hostUid, size: 65536 } });
    assert.equal(result.whiteouts, 1);
    assert.equal(result.opaque, 1);

    const entries = listing(tarPath);
    assert.equal(entries.has('etc/hosts'), false, 'the per-sandbox /etc/hosts is left out');
    assert.equal(entries.has('etc/group'), false, 'a whiteout is not stored as a device');
    assert.match(entries.get('etc/.wh.group') ?? '', /^-/, 'a whiteout is a .wh. file');
    assert.match(entries.get('usr/sbin/.wh..wh..opq') ?? '', /^-/, 'an opaque directory has its marker');
    assert.equal(entries.get('etc/motd'), '-rw-r--r-- 0/0', 'owners written through the user namespace are 0 again');
    assert.equal(entries.get('data/h1'), '-rw-r--r-- 1234/2345');
    assert.match(entries.get('data/h2') ?? '', /^h/, 'the second name of a hard link is a link entry');
    assert.match(entries.get('data/link') ?? '', /^l/);

    // GNU tar reads it back (as the image store unpacks layers): content, xattrs and holes.
    const out = join(dir, 'out');
    await mkdir(out);
    execFileSync('tar', ['--extract', '--file', tarPath, '--directory', out, '--numeric-owner', '--same-owner', '--xattrs', '--xattrs-include=user.*']);
    assert.equal(await readFile(join(out, 'usr', 'sbin', 'only'), 'utf8'), 'new\n');
    assert.equal(execFileSync('getfattr', ['--only-values', '-n', 'user.note', join(out, 'etc', 'motd')], { encoding: 'utf8' }), 'hello');
    const restored = await stat(join(out, 'data', 'sparse'));
    assert.equal(restored.size, 64 * 1024 * 1024 + 3);
    assert.ok(restored.blocks * 512 < 1024 * 1024, `the layer keeps the sparse file's holes (${restored.blocks} blocks)`);

    // The same tree gives the same bytes: an identical layer is stored once. (Not with sparse
    // files: GNU tar names their PAX 1.0 member after its own pid.)
    await rm(join(upper, 'data', 'sparse'));
    const tars: Buffer[] = [];
    for (const name of ['first', 'second']) {
      await copyUpper(upper, join(dir, `staging-${name}`));
      await writeLayerTar(join(dir, `staging-${name}`), join(dir, `${name}.tar`), { exclude: ['etc/hosts'], userns: { hostUid, hostGid: hostUid, size: 65536 } });
      tars.push(await readFile(join(dir, `${name}.tar`)));
    }
    assert.ok(tars[0]?.equals(tars[1] ?? Buffer.alloc(0)), 'two captures of the same upper give the same tarball');
  });

  it('the frozen pass brings the first copy to the upper\'s exact state: changed (even with its old mtime), new, removed, replaced and re-owned entries', async () => {
    const upper = join(dir, 'sync-upper');
    await mkdir(join(upper, 'a', 'deep'), { recursive: true });
    await mkdir(join(upper, 'gone'), { recursive: true });
    await writeFile(join(upper, 'a', 'same'), 'same');
    await writeFile(join(upper, 'a', 'sneaky'), 'aaaa');
    await writeFile(join(upper, 'a', 'deep', 'f'), 'f');
    await writeFile(join(upper, 'gone', 'x'), 'x');
    await writeFile(join(upper, 'becomes-dir'), 'file');
    await writeFile(join(upper, 'owner'), 'o');
    await mkdir(join(upper, 'opq'));
    await writeFile(join(upper, 'opq', 'old'), 'old');
    // Older than the pass's margin: only their inode change times can make them copied again.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const staging = join(dir, 'sync-staging');
    const pre = await precopyUpper(upper, staging);

    // Changes after the first copy: one with its old mtime and size restored (only its ctime tells).
    const old = await stat(join(upper, 'a', 'sneaky'));
    await writeFile(join(upper, 'a', 'sneaky'), 'bbbb');
    await utimes(join(upper, 'a', 'sneaky'), old.atime, old.mtime);
    await rm(join(upper, 'gone'), { recursive: true });
    await rm(join(upper, 'becomes-dir'));
    await mkdir(join(upper, 'becomes-dir', 'sub'), { recursive: true });
    await writeFile(join(upper, 'becomes-dir', 'sub', 'n'), 'n');
    await writeFile(join(upper, 'a', 'deep', 'new'), 'new');
    await link(join(upper, 'a', 'same'), join(upper, 'a', 'same-link'));
    await lchown(join(upper, 'owner'), 4321, 4321);
    execFileSync('mknod', ['-m', '0', join(upper, 'a', 'whiteout'), 'c', '0', '0']);
    // A directory removed and made again over a lower one: overlayfs marks the new one opaque.
    await rm(join(upper, 'opq'), { recursive: true });
    await mkdir(join(upper, 'opq'));
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(upper, 'opq')]);
    await writeFile(join(upper, 'opq', 'new'), 'new');

    const { copied } = await syncFrozen(upper, staging, pre);
    // a/sneaky, becomes-dir, a/deep/new, a/same and a/same-link (one inode), owner, a/whiteout, opq/new.
    assert.equal(copied, 8, 'only what changed is copied again');
    assert.deepEqual(await signature(staging), await signature(upper), 'the copy equals the upper');
    assert.equal(execFileSync('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', join(staging, 'opq')], { encoding: 'utf8' }), 'y', 'a directory made opaque after the first copy is opaque in the copy');
  });

  it('refuses an upper that uses overlayfs redirects', async () => {
    const upper = join(dir, 'redirect');
    await mkdir(join(upper, 'moved'), { recursive: true });
    execFileSync('setfattr', ['-n', 'trusted.overlay.redirect', '-v', '/orig', join(upper, 'moved')]);
    await assert.rejects(writeLayerTar(upper, join(dir, 'r.tar'), { exclude: [] }), /redirect or metacopy/);
  });
});

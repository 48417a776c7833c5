/**
 * ext4 project quotas as a disk limit for oci sandboxes: one shared ext4, a project per sandbox,
 * the sandbox's overlay upper and work directories inside its project (docs/runtime-oci.md, "Disk
 * limit": why the driver keeps a loop device per sandbox).
 *
 * The first case runs everywhere and pins down what this host allows. The isolation cases are what
 * a project-quota backend would have to pass; they run only where the kernel mounts an ext4 with
 * project quotas read-write (not on the project's machines today: their kernel is built without
 * CONFIG_QFMT_V2, and ext4 then refuses the `quota` and `project` features read-write).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, rename, rm, stat, writeFile, link } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it, type TestContext } from 'node:test';
import { isMountPoint } from './disk-pool.js';

const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const MiB = 1024 * 1024;
/** Each project's limit in the isolation cases. */
const LIMIT = 8 * MiB;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; never throws for a non-zero exit. */
function run(command: string, args: readonly string[]): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.once('error', (error) => resolve({ code: null, stdout, stderr: String(error) }));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function mustRun(command: string, args: readonly string[]): Promise<string> {
  const r = await run(command, args);
  assert.equal(r.code, 0, `${command} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A sparse file of `bytes` formatted as ext4 with `features` (`-O`), lazily initialised as the disk pool does. */
async function makeImage(path: string, bytes: number, features: string | undefined): Promise<void> {
  const handle = await open(path, 'w');
  await handle.truncate(bytes).finally(() => handle.close());
  await mustRun('mkfs.ext4', ['-q', '-F', '-m', '0', ...(features ? ['-O', features] : []), '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', path]);
}

/** Unmounts until `path` is no mount point (the loop device goes with the last unmount). */
async function unmountAll(path: string): Promise<void> {
  for (let i = 0; i < 10 && (await isMountPoint(path)); i++) await run('umount', [path]);
  if (await isMountPoint(path)) await run('umount', ['-l', path]);
}

/** What the running kernel's config says about a symbol (`y`, `m`, `n`), when /proc/config.gz exists. */
function kernelConfig(symbol: string): string | undefined {
  if (!existsSync('/proc/config.gz')) return undefined;
  const text = gunzipSync(readFileSync('/proc/config.gz')).toString('utf8');
  const match = new RegExp(`^${symbol}=(\\w+)$`, 'm').exec(text);
  return match?.[1] ?? 'n';
}

/** Sets a directory's project (with the inherit flag) and the project's hard limits, through quotactl(2). */
const HELPER_SOURCE = String.raw`
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/quota.h>
#include <linux/fs.h>
#ifndef PRJQUOTA
#define PRJQUOTA 2
#endif
int main(int argc, char **argv) {
  if (argc != 6) { fprintf(stderr, "usage: setproject <device> <dir> <id> <bytes> <inodes>\n"); return 2; }
  unsigned id = (unsigned)strtoul(argv[3], 0, 10);
  int fd = open(argv[2], O_RDONLY | O_DIRECTORY);
  if (fd < 0) { perror("open"); return 1; }
  struct fsxattr fa;
  if (ioctl(fd, FS_IOC_FSGETXATTR, &fa) != 0) { perror("FS_IOC_FSGETXATTR"); return 1; }
  fa.fsx_projid = id;
  fa.fsx_xflags |= FS_XFLAG_PROJINHERIT;
  if (ioctl(fd, FS_IOC_FSSETXATTR, &fa) != 0) { perror("FS_IOC_FSSETXATTR"); return 1; }
  struct dqblk q;
  memset(&q, 0, sizeof q);
  q.dqb_bhardlimit = strtoull(argv[4], 0, 10) / 1024; /* in 1 KiB blocks */
  q.dqb_ihardlimit = strtoull(argv[5], 0, 10);
  q.dqb_valid = QIF_LIMITS;
  if (quotactl(QCMD(Q_SETQUOTA, PRJQUOTA), argv[1], id, (caddr_t)&q) != 0) { perror("quotactl"); return 1; }
  return 0;
}
`;

describe('ext4 project quotas on this host', { skip: process.getuid?.() !== 0 ? 'needs root (mkfs, loop mounts, quotactl)' : undefined }, () => {
  let scratch = '';
  /** The shared filesystem, mounted `prjquota`, when this kernel allows it. */
  let shared: { mnt: string; device: string; helper: string } | undefined;
  /** Why the shared filesystem could not be mounted read-write. */
  let refusal = '';
  const mounts: string[] = [];

  before(async () => {
    await mkdir(CACHE, { recursive: true });
    scratch = await mkdtemp(join(CACHE, 'project-quota-'));
    const image = join(scratch, 'shared.img');
    const mnt = join(scratch, 'shared');
    await mkdir(mnt);
    await makeImage(image, 256 * MiB, 'quota,project');
    const mounted = await run('mount', ['-o', 'loop,nosuid,nodev,prjquota', image, mnt]);
    if (mounted.code !== 0) {
      refusal = mounted.stderr.trim();
      return;
    }
    mounts.push(mnt);
    const device = (await mustRun('findmnt', ['-n', '-o', 'SOURCE', mnt])).trim();
    const helper = join(scratch, 'setproject');
    await writeFile(`${helper}.c`, HELPER_SOURCE);
    await mustRun('cc', ['-O2', '-o', helper, `${helper}.c`]);
    shared = { mnt, device, helper };
  });

  after(async () => {
    for (const mnt of mounts.reverse()) await unmountAll(mnt);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  /** A directory of the shared filesystem in project `id`, limited to {@link LIMIT} and `inodes`. */
  async function project(name: string, id: number, inodes = 1000): Promise<string> {
    assert.ok(shared);
    const dir = join(shared.mnt, name);
    await mkdir(dir);
    await mustRun(shared.helper, [shared.device, dir, String(id), String(LIMIT), String(inodes)]);
    return dir;
  }

  function needsQuotas(t: TestContext): boolean {
    if (shared) return true;
    t.skip(`this kernel cannot mount an ext4 with project quotas read-write (${refusal || 'see the first case'})`);
    return false;
  }

  it('mounts an ext4 with project quotas read-write, or refuses it for the kernel’s reason and not the test’s', async (t) => {
    const qfmt = kernelConfig('CONFIG_QFMT_V2');
    if (shared) {
      t.diagnostic('ext4 project quotas mount here: the isolation cases below run');
      if (qfmt !== undefined) assert.notEqual(qfmt, 'n', 'mounted although the kernel config has no quota format');
      return;
    }
    t.diagnostic(`refused: ${refusal}; CONFIG_QFMT_V2=${qfmt ?? 'unknown (no /proc/config.gz)'}`);
    // The same kernel mounts a plain ext4 read-write with the same command: loop devices and mount work.
    const plainImage = join(scratch, 'plain.img');
    const plainMnt = join(scratch, 'plain');
    await mkdir(plainMnt);
    await makeImage(plainImage, 64 * MiB, undefined);
    await mustRun('mount', ['-o', 'loop,nosuid,nodev', plainImage, plainMnt]);
    mounts.push(plainMnt);
    await writeFile(join(plainMnt, 'probe'), 'x');
    // And read-write without the prjquota option too: the features alone make ext4 refuse.
    const rwMnt = join(scratch, 'rw');
    await mkdir(rwMnt);
    const rw = await run('mount', ['-o', 'loop', join(scratch, 'shared.img'), rwMnt]);
    if (rw.code === 0) mounts.push(rwMnt);
    assert.notEqual(rw.code, 0, 'an ext4 with the quota and project features mounted read-write without prjquota, but not with it');
    // The image is a valid filesystem (it mounts read-only): only writing with the quota features is refused.
    const roMnt = join(scratch, 'readonly');
    await mkdir(roMnt);
    await mustRun('mount', ['-o', 'loop,ro', join(scratch, 'shared.img'), roMnt]);
    mounts.push(roMnt);
    if (qfmt !== undefined) assert.equal(qfmt, 'n', `the kernel has CONFIG_QFMT_V2=${qfmt} and still refused: ${refusal}`);
  });

  it('refuses a user namespace a change of project or of the inherit flag through an overlay before the filesystem sees it', async (t) => {
    const maxUserns = '/proc/sys/user/max_user_namespaces';
    if (!existsSync(maxUserns) || Number(readFileSync(maxUserns, 'utf8').trim()) === 0) {
      t.skip('user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0): the oci driver runs without them here');
      return;
    }
    // Runs on any filesystem with file attributes (here the cache's): the rule is the VFS's
    // (fileattr_set_prepare: only the initial user namespace changes a project id or the inherit
    // flag), applied to the caller of the ioctl on the overlay, not to the overlay's mounter.
    const base = join(scratch, 'vfs');
    const [lower, upper, work, rootfs] = ['lower', 'upper', 'work', 'rootfs'].map((d) => join(base, d)) as [string, string, string, string];
    await Promise.all([lower, upper, work, rootfs].map((d) => mkdir(d, { recursive: true })));
    await mustRun('mount', ['-t', 'overlay', 'overlay', '-o', `nosuid,nodev,lowerdir=${lower},upperdir=${upper},workdir=${work}`, rootfs]);
    mounts.push(rootfs);
    await writeFile(join(rootfs, 'file'), 'x');
    await mkdir(join(rootfs, 'dir'));
    const inUserns = ['--user', '--map-root-user', '--'];
    const chproj = await run('unshare', [...inUserns, 'chattr', '-p', '4242', join(rootfs, 'file')]);
    assert.notEqual(chproj.code, 0);
    assert.match(chproj.stderr, /Invalid argument while setting project/);
    const inherit = await run('unshare', [...inUserns, 'chattr', '+P', join(rootfs, 'dir')]);
    assert.notEqual(inherit.code, 0);
    assert.match(inherit.stderr, /Invalid argument while setting flags/);
    // Host root passes that rule: the request reaches the filesystem (which, without the project feature, may refuse it itself).
    const hostProj = await run('chattr', ['-p', '4242', join(rootfs, 'file')]);
    assert.doesNotMatch(hostProj.stderr, /Invalid argument/, 'host root was refused by the user-namespace rule');
  });

  it('stops a writer without CAP_SYS_RESOURCE at its project’s limit (EDQUOT), and df in the project shows the limit', async (t) => {
    if (!needsQuotas(t)) return;
    const a = await project('a', 1001);
    const b = await project('b', 1002);
    const capless = ['--bounding-set=-sys_resource', '--inh-caps=-sys_resource', '--'];
    const write = await run('setpriv', [...capless, 'dd', 'if=/dev/zero', `of=${join(a, 'fill')}`, 'bs=1M', `count=${(2 * LIMIT) / MiB}`, 'conv=fsync']);
    assert.notEqual(write.code, 0, 'dd wrote twice the limit');
    assert.match(write.stderr, /quota exceeded/i);
    assert.ok((await stat(join(a, 'fill'))).size <= LIMIT, 'no more than the limit was written');
    const size = Number((await mustRun('df', ['-B1', '--output=size', a])).split('\n')[1]);
    assert.equal(size, LIMIT, 'statfs in a directory of the project reports the project’s limit');
    // A full project takes nothing from another one.
    const other = await run('setpriv', [...capless, 'dd', 'if=/dev/zero', `of=${join(b, 'fill')}`, 'bs=1M', `count=${LIMIT / MiB - 1}`, 'conv=fsync']);
    assert.equal(other.code, 0, other.stderr);
  });

  it('limits the files a project may create', async (t) => {
    if (!needsQuotas(t)) return;
    const c = await project('c', 1003, 50);
    const made = await run('setpriv', ['--bounding-set=-sys_resource', '--inh-caps=-sys_resource', '--', 'sh', '-c', `cd ${c} && i=0; while [ $i -lt 100 ]; do : > f$i || exit 1; i=$((i+1)); done`]);
    assert.notEqual(made.code, 0, '100 files were created under a 50-inode limit');
    assert.match(made.stderr, /quota exceeded/i);
  });

  it('moves or links no file into another project (EXDEV)', async (t) => {
    if (!needsQuotas(t)) return;
    const d = await project('d', 1004);
    const e = await project('e', 1005);
    await writeFile(join(d, 'file'), 'x');
    await assert.rejects(rename(join(d, 'file'), join(e, 'file')), { code: 'EXDEV' });
    await assert.rejects(link(join(d, 'file'), join(e, 'file')), { code: 'EXDEV' });
  });

  it('through an overlay whose upper is in the project: a user namespace cannot change a file’s project or the inherit flag, host root can', async (t) => {
    if (!needsQuotas(t)) return;
    assert.ok(shared);
    const p = await project('p', 1006);
    const lower = join(scratch, 'lower');
    const rootfs = join(scratch, 'rootfs');
    await Promise.all([mkdir(lower), mkdir(rootfs), mkdir(join(p, 'upper')), mkdir(join(p, 'work'))]);
    // Overlayfs writes to its upper layer with the mounter's credentials, and quotas do not hold
    // against CAP_SYS_RESOURCE: the mounter must lack it (the server here does; a backend must check).
    await mustRun('setpriv', ['--bounding-set=-sys_resource', '--inh-caps=-sys_resource', '--', 'mount', '-t', 'overlay', 'overlay', '-o', `nosuid,nodev,lowerdir=${lower},upperdir=${join(p, 'upper')},workdir=${join(p, 'work')}`, rootfs]);
    mounts.push(rootfs);
    await mkdir(join(rootfs, 'dir'));
    await writeFile(join(rootfs, 'file'), 'x');
    const inUserns = ['--user', '--map-root-user', '--'];
    // Root of a user namespace owns the files (host uid 0 maps to it) and has every capability in it.
    const chproj = await run('unshare', [...inUserns, 'chattr', '-p', '0', join(rootfs, 'file')]);
    assert.notEqual(chproj.code, 0, 'a user namespace moved a file out of its project');
    const noInherit = await run('unshare', [...inUserns, 'chattr', '-P', join(rootfs, 'dir')]);
    assert.notEqual(noInherit.code, 0, 'a user namespace cleared the inherit flag');
    const projectOf = async (path: string) => (await mustRun('lsattr', ['-pd', path])).trim().split(/\s+/)[0];
    assert.equal(await projectOf(join(p, 'upper', 'file')), '1006');
    assert.match((await mustRun('lsattr', ['-d', join(p, 'upper', 'dir')])).split(/\s+/)[0] ?? '', /P/);
    // Writes through the overlay from the user namespace stop at the limit; df there shows it.
    const fill = await run('unshare', [...inUserns, 'setpriv', '--bounding-set=-sys_resource', '--', 'dd', 'if=/dev/zero', `of=${join(rootfs, 'fill')}`, 'bs=1M', `count=${(2 * LIMIT) / MiB}`, 'conv=fsync']);
    assert.notEqual(fill.code, 0, 'dd through the overlay wrote twice the limit');
    assert.match(fill.stderr, /quota exceeded/i);
    const size = Number((await mustRun('df', ['-B1', '--output=size', rootfs])).split('\n')[1]);
    assert.equal(size, LIMIT, 'statfs of the overlay reports the project’s limit');
    // Why the user namespace is required: host root (no user namespace) moves the file out of the project through the same overlay.
    await mustRun('chattr', ['-p', '0', join(rootfs, 'file')]);
    assert.equal(await projectOf(join(p, 'upper', 'file')), '0');
  });
});

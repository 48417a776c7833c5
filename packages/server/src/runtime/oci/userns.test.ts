import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RuntimeError } from '../runtime.js';
import { specFixture } from '../../testing/sandbox-fixture.js';
import { isMountPoint } from './disk-pool.js';
import { ensureAgentBinary } from '../native-build.js';
import { buildOciConfig } from './oci-spec.js';
import type { BundlePlacement } from './oci-spec.js';
import { accountsInRange, chownToSandboxRoot, mountIdmappedRootfs, overlappingSubids, resolveUserns, unsearchableAncestor, usernsUnavailable } from './userns.js';
import type { UsernsMapping } from './userns.js';

const REPO = new URL('../../../../../', import.meta.url).pathname;
const SCRATCH = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'userns-test');
/** corral-agent, which makes the id-mapped mounts. */
const AGENT = await ensureAgentBinary(join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'native-test'));
const MAPPING: UsernsMapping = { hostUid: 0x7000_0000, hostGid: 0x7000_0000 + 7, size: 65_536 };
/** v2 `security.capability` granting cap_net_raw (bit 13), effective. */
const CAP_NET_RAW_V2 = '0x0100000200200000000000000000000000000000';

describe('userns: host range checks', () => {
  it('finds /etc/subuid ranges and accounts that overlap the range', () => {
    const subuid = 'alice:100000:65536\nbob:165536:65536\n\nbroken\n';
    assert.deepEqual(overlappingSubids(subuid, 100_000, 65_536), ['alice:100000:65536']);
    assert.deepEqual(overlappingSubids(subuid, 165_535, 2), ['alice:100000:65536', 'bob:165536:65536']);
    assert.deepEqual(overlappingSubids(subuid, 231_072, 10), []);
    const passwd = 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\nhigh:x:1879048200:1:::\n';
    assert.deepEqual(accountsInRange(passwd, 0x7000_0000, 65_536), ['high']);
    assert.deepEqual(accountsInRange(passwd, 1, 1000), []);
  });

  it('refuses invalid mappings; null is off; an explicit mapping the host refuses fails', async () => {
    assert.match((await usernsUnavailable({ hostUid: 0, hostGid: 1, size: 10 }, SCRATCH, AGENT)) ?? '', /invalid mapping/);
    assert.match((await usernsUnavailable({ hostUid: 0xffff_fff0, hostGid: 1, size: 65_536 }, SCRATCH, AGENT)) ?? '', /invalid mapping/);
    assert.equal((await resolveUserns(null, SCRATCH, AGENT)).mapping, null);
    await assert.rejects(resolveUserns({ hostUid: 1, hostGid: 1, size: 0 }, SCRATCH, AGENT), (e: unknown) => e instanceof RuntimeError && /invalid mapping/.test(e.message));
  });

  it('a path the sandbox root cannot search fails init, in auto mode too (auto turns the user namespace off only where the kernel cannot do it)', async () => {
    const closed = join(SCRATCH, `closed-${randomBytes(3).toString('hex')}`);
    const inside = join(closed, 'instances', 'x', 'sandboxes');
    await mkdir(inside, { recursive: true });
    try {
      await chmod(closed, 0o700);
      assert.match((await unsearchableAncestor(MAPPING, [inside])) ?? '', new RegExp(`${closed} \\(mode 0700\\) cannot be searched.*chmod o\\+x`));
      await chown(closed, MAPPING.hostUid, 0);
      assert.equal(await unsearchableAncestor(MAPPING, [inside]), undefined, 'owned by the mapped root: searchable');
      await chown(closed, 0, 0);
      await chmod(closed, 0o711);
      assert.equal(await unsearchableAncestor(MAPPING, [inside]), undefined);
      await chmod(closed, 0o700);
      await assert.rejects(resolveUserns(undefined, SCRATCH, AGENT, [inside]), (e: unknown) => e instanceof RuntimeError && /cannot be searched/.test(e.message));
      await assert.rejects(resolveUserns(MAPPING, SCRATCH, AGENT, [inside]), /cannot be searched/);
    } finally {
      await rm(closed, { recursive: true, force: true });
    }
  });
});

describe('userns: OCI config', () => {
  const placement: BundlePlacement = {
    rootfs: '/r',
    netnsPath: '/run/netns/x',
    cgroupsPath: '/c/x',
    agentBinary: '/agent',
    seccompPrecompiled: true,
    imageEnv: [],
    workingDir: '/',
    hostname: 'x',
  };
  const spec = specFixture({ sandboxId: 'x', image: 'x' });
  type Linux = { namespaces: { type: string; path?: string }[]; uidMappings?: unknown; gidMappings?: unknown; maskedPaths: string[] };
  type Mount = { destination: string; type: string; options: string[] };

  it('without a mapping: no user namespace, a new sysfs', () => {
    const config = buildOciConfig(spec, placement) as { linux: Linux; mounts: Mount[] };
    assert.ok(!config.linux.namespaces.some((n) => n.type === 'user'));
    assert.equal(config.linux.uidMappings, undefined);
    assert.equal(config.mounts.find((m) => m.destination === '/sys')?.type, 'sysfs');
  });

  it('with a mapping: joins the user namespace first, by path, with its uid/gid maps', () => {
    const config = buildOciConfig(spec, { ...placement, userns: { mapping: MAPPING, path: '/run/u/x' } }) as { linux: Linux; mounts: Mount[] };
    assert.deepEqual(config.linux.namespaces[0], { type: 'user', path: '/run/u/x' });
    assert.deepEqual(config.linux.uidMappings, [{ containerID: 0, hostID: MAPPING.hostUid, size: MAPPING.size }]);
    assert.deepEqual(config.linux.gidMappings, [{ containerID: 0, hostID: MAPPING.hostGid, size: MAPPING.size }]);
    // It owns the network namespace, so it mounts its own sysfs as without one.
    assert.equal(config.mounts.find((m) => m.destination === '/sys')?.type, 'sysfs');
  });
});

const rootless = process.getuid?.() !== 0 ? 'needs root (mounts)' : undefined;
describe('userns: id-mapped layers under overlayfs', { skip: rootless }, () => {
  const base = join(SCRATCH, randomBytes(4).toString('hex'));
  const bottom = join(base, 'layers', 'bottom');
  const top = join(base, 'layers', 'top');
  const upper = join(base, 'upper');
  const work = join(base, 'work');
  const rootfs = join(base, 'rootfs');
  let unavailable: string | undefined;

  before(async () => {
    await mkdir(SCRATCH, { recursive: true });
    unavailable = await usernsUnavailable(MAPPING, SCRATCH, AGENT);
    for (const d of [bottom, top, upper, work, rootfs]) await mkdir(d, { recursive: true });
    // Bottom layer: setuid and file-capability binaries, links, an id-1000 file, directories to hide.
    await writeFile(join(bottom, 'suid'), '#!/bin/sh\n');
    await chmod(join(bottom, 'suid'), 0o4755);
    await writeFile(join(bottom, 'capbin'), 'x');
    execFileSync('setfattr', ['-n', 'security.capability', '-v', CAP_NET_RAW_V2, join(bottom, 'capbin')]);
    await link(join(bottom, 'suid'), join(bottom, 'suid-hardlink'));
    await symlink('suid', join(bottom, 'suid-symlink'));
    await writeFile(join(bottom, 'user-file'), 'u');
    await chown(join(bottom, 'user-file'), 1000, 1000);
    await writeFile(join(bottom, 'deleted'), 'gone');
    await mkdir(join(bottom, 'opaque'));
    await writeFile(join(bottom, 'opaque', 'hidden'), 'h');
    // Top layer: an overlayfs whiteout (0/0 char device) and an opaque directory.
    execFileSync('mknod', ['-m', '0', join(top, 'deleted'), 'c', '0', '0']);
    await mkdir(join(top, 'opaque'));
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(top, 'opaque')]);
    await writeFile(join(top, 'opaque', 'kept'), 'k');
  });

  after(async () => {
    if (existsSync(rootfs) && (await isMountPoint(rootfs))) execFileSync('umount', [rootfs]);
    await rm(base, { recursive: true, force: true });
  });

  it('maps owners by the range, keeps setuid bits, file capabilities, links and whiteouts', async (t) => {
    if (unavailable !== undefined) return t.skip(unavailable);
    const scratch = join(base, 'lower');
    await mountIdmappedRootfs(MAPPING, { layers: [bottom, top], upper, work, rootfs, scratch }, AGENT);
    const uid = MAPPING.hostUid;
    const gid = MAPPING.hostGid;

    const suid = await stat(join(rootfs, 'suid'));
    assert.equal(suid.mode & 0o7777, 0o4755, 'setuid bit kept');
    assert.deepEqual([suid.uid, suid.gid], [uid, gid]);
    const sym = await lstat(join(rootfs, 'suid-symlink'));
    assert.ok(sym.isSymbolicLink());
    assert.deepEqual([sym.uid, sym.gid], [uid, gid], 'symlinks are mapped too');
    const hard = await stat(join(rootfs, 'suid-hardlink'));
    assert.equal(hard.ino, suid.ino, 'hard links stay one inode');
    assert.equal(hard.nlink, 2);
    const user = await stat(join(rootfs, 'user-file'));
    assert.deepEqual([user.uid, user.gid], [uid + 1000, gid + 1000]);
    // The capability is presented as a v3 (namespaced) one whose root is the mapped root.
    const cap = execFileSync('getfattr', ['--absolute-names', '-e', 'hex', '-n', 'security.capability', join(rootfs, 'capbin')], { encoding: 'utf8' });
    const rootid = Buffer.alloc(4);
    rootid.writeUInt32LE(uid);
    assert.match(cap, new RegExp(`security.capability=0x0100000300200000000000000000000000000000${rootid.toString('hex')}`));
    // Whiteouts and opaque directories of the top layer still apply.
    assert.ok(!existsSync(join(rootfs, 'deleted')));
    assert.deepEqual(await readdir(join(rootfs, 'opaque')), ['kept']);

    // The layers themselves are untouched, and the temporary layer mounts are gone.
    assert.equal((await stat(join(bottom, 'suid'))).uid, 0);
    assert.equal((await stat(join(bottom, 'user-file'))).uid, 1000);
    assert.ok(!existsSync(scratch));
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(scratch), 'no layer mount left attached');

    // Copy-up keeps the mapped owner; the layers stay read-only underneath.
    await writeFile(join(rootfs, 'user-file'), 'changed');
    const copied = await stat(join(upper, 'user-file'));
    assert.deepEqual([copied.uid, copied.gid], [uid + 1000, gid + 1000]);
    assert.equal(await readFile(join(bottom, 'user-file'), 'utf8'), 'u');
    execFileSync('umount', [rootfs]);
  });

  it('chownToSandboxRoot gives the mapped root the files and every directory down to the workspace', async () => {
    const up = join(base, 'chown-upper');
    await mkdir(join(up, 'sandbox-workspace', 'deep'), { recursive: true });
    await writeFile(join(base, 'hosts'), '');
    await symlink('/etc/passwd', join(base, 'link'));
    await chownToSandboxRoot(MAPPING, [join(base, 'hosts'), join(base, 'link')], { upper: up, path: '/sandbox-workspace/deep' });
    for (const p of [up, join(up, 'sandbox-workspace'), join(up, 'sandbox-workspace', 'deep'), join(base, 'hosts')]) {
      const s = await stat(p);
      assert.deepEqual([s.uid, s.gid], [MAPPING.hostUid, MAPPING.hostGid], p);
    }
    assert.equal((await lstat(join(base, 'link'))).uid, MAPPING.hostUid);
    assert.equal((await stat('/etc/passwd')).uid, 0, 'a symlink target is not followed');
  });
});

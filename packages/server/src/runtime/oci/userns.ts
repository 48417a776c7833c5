import { lchown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, posix, resolve } from 'node:path';
import { RuntimeError } from '../runtime.js';
import { runTool, ToolError } from './run-tool.js';

/**
 * The host id range root in a sandbox maps to: sandbox uid `n` is host uid `hostUid + n` for
 * `0 ≤ n < size` (gids likewise). Every sandbox of the driver shares it.
 */
export interface UsernsMapping {
  hostUid: number;
  hostGid: number;
  size: number;
}

/**
 * Default range: 0x70000000 + 65536. It lies above what `useradd` hands out in /etc/subuid
 * (100000–600100000) and what systemd-nspawn picks (524288–1878982656), and below the ranges
 * systemd reserves from 0x7FFE0000.
 */
export const DEFAULT_USERNS_MAPPING: UsernsMapping = { hostUid: 0x7000_0000, hostGid: 0x7000_0000, size: 65_536 };

/** x86-64 / arm64 numbers of the syscalls the helpers make (the new mount API's are the same on both). */
const SYSCALLS: Partial<Record<string, { unshare: number; mount: number; umount2: number }>> = {
  x64: { unshare: 272, mount: 165, umount2: 166 },
  arm64: { unshare: 97, mount: 40, umount2: 39 },
};

function syscalls(): { unshare: number; mount: number; umount2: number } {
  const nr = SYSCALLS[process.arch];
  if (!nr) throw new RuntimeError('UNSUPPORTED', `user namespaces are not supported on ${process.arch}`);
  return nr;
}

/**
 * Mounts a sandbox's rootfs with its image layers id-mapped (perl-base, read from stdin). A child
 * process unshares a user namespace that the parent gives the mapping; each layer is cloned
 * (`open_tree`), made read-only and id-mapped through that namespace (`mount_setattr`), and
 * attached at `<scratch>/<i>` (`move_mount`); overlayfs is mounted with them as lowerdirs
 * (relative to `<scratch>`, top layer first), then the layer mounts are detached (overlayfs holds
 * its own private clones) and `<scratch>` removed. The layer mounts are read-only so that nothing
 * (a recursive delete of the sandbox directory after a killed helper, say) can change the shared
 * cache through them.
 * Arguments: unshare, mount, umount2 numbers, host uid, host gid, size, scratch, rootfs, upperdir,
 * workdir, layer directories bottom first.
 */
const ROOTFS_SCRIPT = `
use strict;
my ($nr_unshare, $nr_mount, $nr_umount2, $uid, $gid, $size, $scratch, $target, $upper, $work, @layers) = @ARGV;
my @attached;
sub cleanup { for my $m (reverse @attached) { syscall($nr_umount2, $m, 2); rmdir $m; } @attached = (); rmdir $scratch; }
$SIG{__DIE__} = sub { cleanup(); };
pipe(my $go_r, my $go_w) or die "pipe: $!\\n";
pipe(my $ready_r, my $ready_w) or die "pipe: $!\\n";
my $child = fork();
die "fork: $!\\n" unless defined $child;
if ($child == 0) {
  close $go_w; close $ready_r;
  exit 1 if syscall($nr_unshare, 0x10000000) != 0;
  syswrite($ready_w, 'u'); close $ready_w;
  sysread($go_r, my $byte, 1); exit 0;
}
close $go_r; close $ready_w;
sysread($ready_r, my $byte, 1) == 1 or die "unshare(CLONE_NEWUSER) failed\\n";
for (['uid_map', $uid], ['gid_map', $gid]) {
  open(my $fh, '>', "/proc/$child/$_->[0]") or die "$_->[0]: $!\\n";
  print $fh "0 $_->[1] $size\\n";
  close $fh or die "writing $_->[0]: $!\\n";
}
open(my $ns, '<', "/proc/$child/ns/user") or die "user namespace: $!\\n";
mkdir $scratch or die "$scratch: $!\\n";
my $empty = '';
my $attr = pack('QQQQ', 0x00100000 | 0x1, 0, 0, fileno($ns));
for my $i (0 .. $#layers) {
  my $fd = syscall(428, -100, $layers[$i], 1 | 0x8000 | 0x80000);
  die "open_tree $layers[$i]: $!\\n" if $fd < 0;
  syscall(442, $fd, $empty, 0x1000, $attr, length $attr) == 0 or die "id-mapping $layers[$i]: $!\\n";
  my $dir = "$scratch/$i";
  mkdir $dir or die "$dir: $!\\n";
  syscall(429, $fd, $empty, -100, $dir, 4) == 0 or die "move_mount $dir: $!\\n";
  push @attached, $dir;
}
chdir $scratch or die "$scratch: $!\\n";
my ($fstype, $data) = ('overlay', 'lowerdir=' . join(':', reverse 0 .. $#layers) . ",upperdir=$upper,workdir=$work");
syscall($nr_mount, $fstype, $target, $fstype, 0, $data) == 0 or die "mounting the overlay: $!\\n";
chdir '/';
cleanup();
close $go_w; waitpid($child, 0);
`;

/**
 * Makes a user namespace with the mapping and a network namespace it owns (one
 * `unshare(CLONE_NEWUSER|CLONE_NEWNET)` in a child the parent gives the mapping), and keeps both
 * by bind-mounting their nsfs files onto the two paths (created empty).
 * Arguments: unshare, mount numbers, host uid, host gid, size, user namespace path, netns path.
 */
const NAMESPACES_SCRIPT = `
use strict;
my ($nr_unshare, $nr_mount, $uid, $gid, $size, $userfile, $netfile) = @ARGV;
pipe(my $go_r, my $go_w) or die "pipe: $!\\n";
pipe(my $ready_r, my $ready_w) or die "pipe: $!\\n";
my $child = fork();
die "fork: $!\\n" unless defined $child;
if ($child == 0) {
  close $go_w; close $ready_r;
  exit 1 if syscall($nr_unshare, 0x10000000 | 0x40000000) != 0;
  syswrite($ready_w, 'u'); close $ready_w;
  sysread($go_r, my $byte, 1); exit 0;
}
close $go_r; close $ready_w;
sysread($ready_r, my $byte, 1) == 1 or die "unshare(CLONE_NEWUSER|CLONE_NEWNET) failed\\n";
for (['uid_map', $uid], ['gid_map', $gid]) {
  open(my $fh, '>', "/proc/$child/$_->[0]") or die "$_->[0]: $!\\n";
  print $fh "0 $_->[1] $size\\n";
  close $fh or die "writing $_->[0]: $!\\n";
}
my $none = '';
for ([$userfile, 'user'], [$netfile, 'net']) {
  my ($file, $type) = @$_;
  open(my $fh, '>', $file) or die "$file: $!\\n"; close $fh;
  syscall($nr_mount, "/proc/$child/ns/$type", $file, $none, 4096, 0) == 0 or die "keeping the $type namespace at $file: $!\\n";
}
close $go_w; waitpid($child, 0);
`;

/** Where {@link mountIdmappedRootfs} mounts what. */
export interface IdmappedRootfs {
  /** Image layer directories, bottom first. */
  layers: string[];
  upper: string;
  work: string;
  /** Mount point of the merged overlay. */
  rootfs: string;
  /** A path that does not exist yet, in a directory of the host's mount namespace; removed again. */
  scratch: string;
}

/**
 * Mounts overlayfs at `rootfs` with every layer id-mapped to `mapping` (files owned by host uid
 * `n` appear owned by `hostUid + n`; setuid bits and file capabilities follow), read-only. Needs
 * kernel ≥ 5.19 and a layer filesystem that supports id-mapped mounts (ext4, xfs, btrfs, tmpfs ≥ 6.3).
 */
export async function mountIdmappedRootfs(mapping: UsernsMapping, paths: IdmappedRootfs): Promise<void> {
  const nr = syscalls();
  const args = [
    '-',
    String(nr.unshare),
    String(nr.mount),
    String(nr.umount2),
    String(mapping.hostUid),
    String(mapping.hostGid),
    String(mapping.size),
    resolve(paths.scratch),
    resolve(paths.rootfs),
    resolve(paths.upper),
    resolve(paths.work),
    ...paths.layers.map((l) => resolve(l)),
  ];
  await runTool('perl', args, { input: ROOTFS_SCRIPT });
}

/**
 * Creates a user namespace with `mapping`, kept at `usernsPath`, and a network namespace it owns,
 * kept at `netnsPath` (both files must not exist; `ip netns delete` removes the network one,
 * {@link removeKeptNamespace} either). A sandbox joins both by path: owning its network namespace,
 * its root may mount sysfs and bind ports below 1024 there, and `runc exec` (which joins the user
 * namespace first) may join it.
 */
export async function createOwnedNetns(mapping: UsernsMapping, usernsPath: string, netnsPath: string): Promise<void> {
  const nr = syscalls();
  await mkdir(dirname(usernsPath), { recursive: true });
  await mkdir(dirname(netnsPath), { recursive: true });
  const args = ['-', String(nr.unshare), String(nr.mount), String(mapping.hostUid), String(mapping.hostGid), String(mapping.size), usernsPath, netnsPath];
  try {
    await runTool('perl', args, { input: NAMESPACES_SCRIPT });
  } catch (error) {
    await Promise.all([removeKeptNamespace(usernsPath), removeKeptNamespace(netnsPath)]);
    throw error;
  }
}

/** Unmounts (lazily) and deletes a namespace file kept by a bind mount. Idempotent. */
export async function removeKeptNamespace(path: string): Promise<void> {
  try {
    await stat(path);
  } catch {
    return;
  }
  await runTool('umount', ['-l', path]).catch(() => undefined);
  await rm(path, { force: true });
}

/**
 * Gives the sandbox's root (host `hostUid`/`hostGid`) what the host made for it: `paths`
 * themselves (not symlinks' targets), and with `within`, each directory from the overlay's upper
 * root down to `within` (a sandbox path such as the workspace).
 */
export async function chownToSandboxRoot(mapping: UsernsMapping, paths: string[], within?: { upper: string; path: string }): Promise<void> {
  const all = [...paths];
  if (within) {
    let dir = within.upper;
    all.push(dir);
    for (const part of posix.normalize(within.path).split('/').filter(Boolean)) {
      dir = join(dir, part);
      all.push(dir);
    }
  }
  await Promise.all(all.map((p) => lchown(p, mapping.hostUid, mapping.hostGid)));
}

/** Id ranges `name:start:count` from /etc/subuid or /etc/subgid that overlap `[start, start + size)`. */
export function overlappingSubids(text: string, start: number, size: number): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const [name, from, count] = line.trim().split(':');
    const a = Number(from);
    const n = Number(count);
    if (!name || !Number.isInteger(a) || !Number.isInteger(n)) continue;
    if (a < start + size && start < a + n) out.push(line.trim());
  }
  return out;
}

/** Names in /etc/passwd (or /etc/group) whose id (third field) lies in `[start, start + size)`. */
export function accountsInRange(text: string, start: number, size: number): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    const n = Number(id);
    if (name && Number.isInteger(n) && n >= start && n < start + size) out.push(name);
  }
  return out;
}

/**
 * Why `mapping` cannot be used on this host, or undefined when it can: user namespaces must be
 * enabled (`user.max_user_namespaces` > 0), no /etc/subuid, /etc/subgid, /etc/passwd or /etc/group entry
 * may use the range, and an id-mapped layer must stack under overlayfs on the filesystem of
 * `scratchDir` (tried for real: a directory is id-mapped, overlaid, and its owner checked).
 */
/**
 * The runtime mounts the rootfs, the agent and the /etc files from inside the user namespace, so
 * the sandbox's root (host uid `hostUid`, group `hostGid`) must be able to search every directory
 * above them. Returns why not for the first directory of `paths` (or their ancestors) it cannot.
 */
export async function unsearchableAncestor(mapping: UsernsMapping, paths: string[]): Promise<string | undefined> {
  for (const path of paths) {
    let dir = resolve(path);
    for (;;) {
      const info = await stat(dir).catch(() => undefined);
      if (info) {
        const searchable =
          (info.mode & 0o001) !== 0 || (info.uid === mapping.hostUid && (info.mode & 0o100) !== 0) || (info.gid === mapping.hostGid && (info.mode & 0o010) !== 0);
        if (!searchable) {
          const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
          return `${dir} (mode ${mode}) cannot be searched by a sandbox's root (host uid ${mapping.hostUid}); make it searchable (chmod o+x ${dir}) or keep the data directory elsewhere`;
        }
      }
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  return undefined;
}

export async function usernsUnavailable(mapping: UsernsMapping, scratchDir: string): Promise<string | undefined> {
  const { hostUid, hostGid, size } = mapping;
  if (![hostUid, hostGid, size].every((n) => Number.isInteger(n) && n > 0) || hostUid + size > 0xffff_ffff || hostGid + size > 0xffff_ffff) {
    return `invalid mapping ${hostUid}:${hostGid}:${size}`;
  }
  const max = (await readFile('/proc/sys/user/max_user_namespaces', 'utf8').catch(() => '')).trim();
  if (max === '') return 'the kernel has no user namespaces (/proc/sys/user/max_user_namespaces is missing)';
  if (Number(max) === 0) return 'user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)';
  const read = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');
  const [subuid, subgid, passwd, group] = await Promise.all([read('/etc/subuid'), read('/etc/subgid'), read('/etc/passwd'), read('/etc/group')]);
  const clashes = [
    ...overlappingSubids(subuid, hostUid, size).map((l) => `/etc/subuid ${l}`),
    ...overlappingSubids(subgid, hostGid, size).map((l) => `/etc/subgid ${l}`),
    ...accountsInRange(passwd, hostUid, size).map((n) => `user ${n}`),
    ...accountsInRange(group, hostGid, size).map((n) => `group ${n}`),
  ];
  if (clashes.length > 0) return `the host id range ${hostUid}:${hostGid}:${size} is already in use (${clashes.join(', ')})`;
  return probeIdmappedOverlay(mapping, scratchDir);
}

async function probeIdmappedOverlay(mapping: UsernsMapping, scratchDir: string): Promise<string | undefined> {
  const dir = join(scratchDir, `userns-probe-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const [layer, upper, work, rootfs] = ['layer', 'upper', 'work', 'rootfs'].map((d) => join(dir, d)) as [string, string, string, string];
  try {
    await mkdir(scratchDir, { recursive: true });
    await Promise.all([layer, upper, work, rootfs].map((d) => mkdir(d, { recursive: true })));
    await writeFile(join(layer, 'probe'), '');
    await mountIdmappedRootfs(mapping, { layers: [layer], upper, work, rootfs, scratch: join(dir, 'lower') });
    try {
      const owner = await stat(join(rootfs, 'probe'));
      if (owner.uid !== mapping.hostUid || owner.gid !== mapping.hostGid) {
        return `an id-mapped layer shows owner ${owner.uid}:${owner.gid}, not ${mapping.hostUid}:${mapping.hostGid}`;
      }
    } finally {
      await runTool('umount', [rootfs]);
    }
    return undefined;
  } catch (error) {
    const detail = error instanceof ToolError ? error.stderr.trim() : (error as Error).message;
    return `id-mapped overlay layers do not work here (kernel ≥ 5.19 and an ext4/xfs/btrfs image store are needed): ${detail}`;
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * The mapping the driver uses: `null` (off) stays off; `undefined` (auto) is
 * {@link DEFAULT_USERNS_MAPPING} when {@link usernsUnavailable} finds no obstacle, else off with a process warning saying
 * why; an explicit mapping the host does not allow is a RUNTIME_ERROR.
 */
export async function resolveUserns(option: UsernsMapping | null | undefined, scratchDir: string, reachable: string[] = []): Promise<UsernsMapping | null> {
  if (option === null) return null;
  const mapping = option ?? DEFAULT_USERNS_MAPPING;
  const reason = (await unsearchableAncestor(mapping, reachable)) ?? (await usernsUnavailable(mapping, scratchDir));
  if (reason === undefined) return mapping;
  if (option !== undefined) throw new RuntimeError('RUNTIME_ERROR', `the user namespace mapping cannot be used: ${reason}`);
  process.emitWarning(`oci runtime: sandboxes run without a user namespace (root in a sandbox is host root): ${reason}`, { code: 'CORRAL_OCI_USERNS' });
  return null;
}

import { lchown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, posix, resolve } from 'node:path';
import { RuntimeError } from '../runtime.js';
import { runTool, ToolError } from '../run-tool.js';

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
 * `n` appear owned by `hostUid + n`; setuid bits and file capabilities follow), read-only, through
 * `corral-agent idmap-mount` (`agent`): each layer is cloned (`open_tree`), made read-only and
 * id-mapped through a throwaway user namespace (`mount_setattr`), attached under `scratch`, stacked
 * as a lowerdir, and detached again once the overlay is mounted (overlayfs keeps its own clones).
 * The layer mounts are read-only so that nothing can change the shared cache through them. Needs
 * kernel ≥ 5.19 and a layer filesystem that supports id-mapped mounts (ext4, xfs, btrfs, tmpfs ≥ 6.3).
 */
export async function mountIdmappedRootfs(mapping: UsernsMapping, paths: IdmappedRootfs, agent: string): Promise<void> {
  await runTool(agent, [
    'idmap-mount',
    String(mapping.hostUid),
    String(mapping.hostGid),
    String(mapping.size),
    resolve(paths.scratch),
    resolve(paths.rootfs),
    resolve(paths.upper),
    resolve(paths.work),
    ...paths.layers.map((l) => resolve(l)),
  ]);
}

/**
 * Creates a user namespace with `mapping`, kept at `usernsPath`, and a network namespace it owns,
 * kept at `netnsPath` (`corral-agent netns`; both files must not exist; `ip netns delete` removes
 * the network one, {@link removeKeptNamespace} either). A sandbox joins both by path: owning its
 * network namespace, its root may mount sysfs and bind ports below 1024 there, and `runc exec`
 * (which joins the user namespace first) may join it.
 */
export async function createOwnedNetns(mapping: UsernsMapping, usernsPath: string, netnsPath: string, agent: string, background = false): Promise<void> {
  await mkdir(dirname(usernsPath), { recursive: true });
  await mkdir(dirname(netnsPath), { recursive: true });
  try {
    await runTool(agent, ['netns', String(mapping.hostUid), String(mapping.hostGid), String(mapping.size), usernsPath, netnsPath], { background });
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
  await runTool('umount', ['-l', path], { background: true }).catch(() => undefined);
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

/**
 * Why `mapping` cannot be used on this host, or undefined when it can: {@link hostRangeInUse}, then
 * {@link kernelCannotMapUsers}.
 */
export async function usernsUnavailable(mapping: UsernsMapping, scratchDir: string, agent: string): Promise<string | undefined> {
  return (await hostRangeInUse(mapping)) ?? (await kernelCannotMapUsers(mapping, scratchDir, agent));
}

/** Why the host's id range `mapping` is taken (an /etc/subuid, /etc/subgid, /etc/passwd or /etc/group entry uses it), or undefined. */
export async function hostRangeInUse(mapping: UsernsMapping): Promise<string | undefined> {
  const { hostUid, hostGid, size } = mapping;
  if (![hostUid, hostGid, size].every((n) => Number.isInteger(n) && n > 0) || hostUid + size > 0xffff_ffff || hostGid + size > 0xffff_ffff) {
    return `invalid mapping ${hostUid}:${hostGid}:${size}`;
  }
  const read = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');
  const [subuid, subgid, passwd, group] = await Promise.all([read('/etc/subuid'), read('/etc/subgid'), read('/etc/passwd'), read('/etc/group')]);
  const clashes = [
    ...overlappingSubids(subuid, hostUid, size).map((l) => `/etc/subuid ${l}`),
    ...overlappingSubids(subgid, hostGid, size).map((l) => `/etc/subgid ${l}`),
    ...accountsInRange(passwd, hostUid, size).map((n) => `user ${n}`),
    ...accountsInRange(group, hostGid, size).map((n) => `group ${n}`),
  ];
  if (clashes.length > 0) return `the host id range ${hostUid}:${hostGid}:${size} is already in use (${clashes.join(', ')})`;
  return undefined;
}

/**
 * Why the kernel cannot give sandboxes a user namespace here, or undefined: user namespaces must be
 * enabled (`user.max_user_namespaces` > 0) and an id-mapped layer must stack under overlayfs on the
 * filesystem of `scratchDir` (tried for real: a directory is id-mapped, overlaid, and its owner checked).
 */
export async function kernelCannotMapUsers(mapping: UsernsMapping, scratchDir: string, agent: string): Promise<string | undefined> {
  const max = (await readFile('/proc/sys/user/max_user_namespaces', 'utf8').catch(() => '')).trim();
  if (max === '') return 'the kernel has no user namespaces (/proc/sys/user/max_user_namespaces is missing)';
  if (Number(max) === 0) return 'user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)';
  return probeIdmappedOverlay(mapping, scratchDir, agent);
}

async function probeIdmappedOverlay(mapping: UsernsMapping, scratchDir: string, agent: string): Promise<string | undefined> {
  const dir = join(scratchDir, `userns-probe-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const [layer, upper, work, rootfs] = ['layer', 'upper', 'work', 'rootfs'].map((d) => join(dir, d)) as [string, string, string, string];
  try {
    await mkdir(scratchDir, { recursive: true });
    await Promise.all([layer, upper, work, rootfs].map((d) => mkdir(d, { recursive: true })));
    await writeFile(join(layer, 'probe'), '');
    await mountIdmappedRootfs(mapping, { layers: [layer], upper, work, rootfs, scratch: join(dir, 'lower') }, agent);
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

/** What {@link resolveUserns} decided: the mapping new sandboxes get, or null and why not. */
export interface UsernsDecision {
  mapping: UsernsMapping | null;
  reason?: string;
}

/**
 * The mapping the driver uses: `null` (off) stays off; `undefined` (auto) is
 * {@link DEFAULT_USERNS_MAPPING}, or off (with the reason) only where the kernel cannot do it
 * ({@link kernelCannotMapUsers}). A host range that is in use, or a path in `reachable` the
 * sandbox's root cannot search, is a RUNTIME_ERROR in every mode, as is an explicit mapping the
 * kernel cannot use.
 */
export async function resolveUserns(option: UsernsMapping | null | undefined, scratchDir: string, agent: string, reachable: string[] = []): Promise<UsernsDecision> {
  if (option === null) return { mapping: null, reason: 'turned off (CORRAL_OCI_USERNS=off)' };
  const mapping = option ?? DEFAULT_USERNS_MAPPING;
  const blocked = (await hostRangeInUse(mapping)) ?? (await unsearchableAncestor(mapping, reachable));
  if (blocked !== undefined) {
    throw new RuntimeError('RUNTIME_ERROR', `the user namespace mapping cannot be used: ${blocked} (set CORRAL_OCI_USERNS to a free <hostUid>:<hostGid>:<size> range, or to off)`);
  }
  const reason = await kernelCannotMapUsers(mapping, scratchDir, agent);
  if (reason === undefined) return { mapping };
  if (option !== undefined) throw new RuntimeError('RUNTIME_ERROR', `the user namespace mapping cannot be used: ${reason}`);
  return { mapping: null, reason };
}

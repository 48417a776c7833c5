import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Ends processes of a Docker container from the host through its cgroup, for when the engine
 * itself is stuck on the container (runc blocked opening a FIFO the sandbox put at /etc/passwd
 * holds the container's locks in dockerd, so `docker exec`, inspect and `rm -f` all wait).
 *
 * Needs this process on the Docker host, as root, seeing its cgroup filesystem and pid namespace.
 * It opens no file of the sandbox: only cgroup files and the kernel's /proc/<pid>/stat and comm.
 */

const CGROUP_ROOT = '/sys/fs/cgroup';

/** The container's cgroup: its directory and whether it is a v2 (unified) one. */
interface ContainerCgroup {
  dir: string;
  v2: boolean;
}

/** The container's cgroup directory (cgroupfs or systemd driver; v1 freezer or v2), if found. */
export function containerCgroup(containerId: string, root = CGROUP_ROOT): ContainerCgroup | undefined {
  if (!/^[0-9a-f]{64}$/.test(containerId)) return undefined;
  const v2 = existsSync(join(root, 'cgroup.controllers'));
  const base = v2 ? root : join(root, 'freezer');
  for (const dir of [join(base, 'docker', containerId), join(base, 'system.slice', `docker-${containerId}.scope`)]) {
    if (existsSync(join(dir, 'cgroup.procs'))) return { dir, v2 };
  }
  return undefined;
}

/** Pids listed in a cgroup's `cgroup.procs`. */
async function cgroupPids(cgroup: ContainerCgroup): Promise<number[]> {
  const text = await readFile(join(cgroup.dir, 'cgroup.procs'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map(Number).filter((pid) => Number.isInteger(pid) && pid > 0);
}

/** Parent pid of `pid` from /proc/<pid>/stat (the name may hold spaces and parentheses). */
async function parentPid(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const ppid = Number(stat.slice(close + 2).split(' ')[1]);
  return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
}

/** Short name of a process (`comm`), or '' when it is gone. */
async function processName(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs `fn` with every process of the cgroup frozen (v1 freezer or v2 `cgroup.freeze`), so none
 * can exit and have its pid reused while `fn` signals it; always thaws afterwards.
 */
async function whileFrozen<T>(cgroup: ContainerCgroup, fn: () => Promise<T>): Promise<T> {
  const [file, frozen, thawed] = cgroup.v2 ? ['cgroup.freeze', '1', '0'] : ['freezer.state', 'FROZEN', 'THAWED'];
  await writeFile(join(cgroup.dir, file), frozen);
  try {
    for (let i = 0; i < 50; i++) {
      const state = cgroup.v2
        ? /^frozen 1$/m.test(await readFile(join(cgroup.dir, 'cgroup.events'), 'utf8'))
        : (await readFile(join(cgroup.dir, file), 'utf8')).trim() === frozen;
      if (state) break;
      await sleep(10);
    }
    return await fn();
  } finally {
    await writeFile(join(cgroup.dir, file), thawed).catch(() => undefined);
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

/**
 * SIGKILLs the `runc init` processes of execs that have not started yet: processes in the
 * container's cgroup whose parent is outside it and is a host `runc` (a `runc exec`). The sandbox
 * cannot fake one: it names neither the parent nor where it lives. Their execs then fail and the
 * engine lets go of the container. Returns how many were killed (0 when the cgroup is not found).
 */
export async function killStartingExecs(containerId: string): Promise<number> {
  const cgroup = containerCgroup(containerId);
  if (!cgroup) return 0;
  return whileFrozen(cgroup, async () => {
    const pids = await cgroupPids(cgroup);
    const inside = new Set(pids);
    let killed = 0;
    for (const pid of pids) {
      const ppid = await parentPid(pid);
      if (ppid === undefined || inside.has(ppid)) continue;
      if ((await processName(ppid)) !== 'runc') continue;
      killQuietly(pid);
      killed++;
    }
    return killed;
  });
}

/**
 * SIGKILLs every process of the container (its init, the sandbox's processes and any stuck
 * `runc init`): `cgroup.kill` on cgroup v2 kernels that have it, else freeze, kill each pid, thaw.
 * False when the cgroup is not found.
 */
export async function killContainerProcesses(containerId: string): Promise<boolean> {
  const cgroup = containerCgroup(containerId);
  if (!cgroup) return false;
  if (cgroup.v2 && existsSync(join(cgroup.dir, 'cgroup.kill'))) {
    await writeFile(join(cgroup.dir, 'cgroup.kill'), '1');
    return true;
  }
  await whileFrozen(cgroup, async () => {
    for (const pid of await cgroupPids(cgroup)) killQuietly(pid);
  });
  return true;
}

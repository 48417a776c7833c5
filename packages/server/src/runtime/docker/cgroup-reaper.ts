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

/** The container's cgroup directory (cgroupfs or systemd driver, Docker's default parent or the driver's; v1 freezer or v2), if found. */
export function containerCgroup(containerId: string, root = CGROUP_ROOT): ContainerCgroup | undefined {
  if (!/^[0-9a-f]{64}$/.test(containerId)) return undefined;
  const v2 = existsSync(join(root, 'cgroup.controllers'));
  const base = v2 ? root : join(root, 'freezer');
  const candidates = [
    join(base, 'docker', containerId),
    join(base, 'system.slice', `docker-${containerId}.scope`),
    // The driver's own cgroup parents (docker-runtime.ts, sandboxCgroupParent).
    join(base, 'corral-docker', containerId),
    join(base, 'corral.slice', `docker-${containerId}.scope`),
  ];
  for (const dir of candidates) {
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

/** Kernel wait channels of a task blocked opening a FIFO that has no other end. */
const FIFO_OPEN_WAITS = new Set(['wait_for_partner', 'fifo_open']);

/** Whether a process sleeps in the kernel opening a FIFO (its `wchan`). */
async function blockedOpeningFifo(pid: number): Promise<boolean> {
  return FIFO_OPEN_WAITS.has((await readFile(`/proc/${pid}/wchan`, 'utf8').catch(() => '')).trim());
}

/** Whether a process of the cgroup is the `runc init` of an exec: its parent is a host `runc` outside the cgroup. */
async function isExecInit(pid: number, inside: ReadonlySet<number>): Promise<boolean> {
  const ppid = await parentPid(pid);
  return ppid !== undefined && !inside.has(ppid) && (await processName(ppid)) === 'runc';
}

/**
 * SIGKILLs the `runc init` processes of execs stuck starting because the sandbox made a file runc
 * opens (`/etc/passwd`, `/etc/group`) a FIFO: processes in the container's cgroup whose parent is a
 * host `runc` outside it (a `runc exec`) and that sleep in the kernel opening a FIFO. An exec that
 * is only slow to start (a loaded host) is never one of them. The sandbox cannot fake one: it names
 * neither the parent nor where it lives. The wait channel is read before freezing (a frozen task
 * waits in the freezer instead); the parent is checked again while frozen, so no reused pid is
 * signalled. Their execs then fail and the engine lets go of the container. Returns how many were
 * killed (0 when the cgroup is not found).
 */
export async function killStartingExecs(containerId: string): Promise<number> {
  const cgroup = containerCgroup(containerId);
  if (!cgroup) return 0;
  const before = await cgroupPids(cgroup);
  const inside = new Set(before);
  const stuck: number[] = [];
  for (const pid of before) if ((await isExecInit(pid, inside)) && (await blockedOpeningFifo(pid))) stuck.push(pid);
  if (stuck.length === 0) return 0;
  return whileFrozen(cgroup, async () => {
    const now = new Set(await cgroupPids(cgroup));
    let killed = 0;
    for (const pid of stuck) {
      if (!now.has(pid) || !(await isExecInit(pid, now))) continue;
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

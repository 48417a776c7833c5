import { constants } from 'node:fs';
import { access, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { RuntimeStats } from './runtime.js';

/** Which cgroup interface the host exposes for resource control. */
export type CgroupVersion = 'v1' | 'v2';

/**
 * The host's cgroup hierarchy as the oci driver sees it. Every `cgroupsPath` is the OCI config's
 * `linux.cgroupsPath` (absolute, e.g. `/corral-oci/<instance>/<runtimeId>`), resolved under
 * `root`. Readers never throw: a missing file or vanished cgroup reads as zero / empty.
 */
export interface CgroupLayout {
  readonly version: CgroupVersion;
  /** Mount point of the hierarchy (or of the v1 controller mounts), normally `/sys/fs/cgroup`. */
  readonly root: string;
  /** Pids in the cgroup and every cgroup nested below it; empty when the cgroup is gone. */
  listPids(cgroupsPath: string): Promise<number[]>;
  /** Memory in use (minus inactive page cache), memory limit, CPU time and task count. */
  stats(cgroupsPath: string): Promise<RuntimeStats>;
  /** How many processes of the cgroup the kernel's OOM killer has killed. */
  oomKills(cgroupsPath: string): Promise<number>;
  /** The file whose `oom_kill N` line counts the cgroup's OOM kills (read by the shim). */
  oomFile(cgroupsPath: string): string;
  /**
   * Removes the cgroup (and any empty cgroups nested below it, deepest first) from every
   * hierarchy, then its parent wherever that is left empty. Never throws; directories still
   * holding processes stay.
   */
  remove(cgroupsPath: string): Promise<void>;
  /** Names of the child cgroups of `parentPath`, across hierarchies, deduplicated and sorted. */
  childNames(parentPath: string): Promise<string[]>;
  /**
   * SIGKILLs every process of the cgroup through `cgroup.kill` (v2, Linux 5.14+) and returns
   * true; returns false when that is unavailable, so the caller falls back to `runc kill --all`.
   */
  killAll(cgroupsPath: string): Promise<boolean>;
  /**
   * Sets the memory (no swap), CPU quota (100 ms period) and pids limits of a running sandbox's
   * cgroup, as the runtime sets them at start from the OCI config. Throws when a limit cannot be
   * written (a vanished cgroup, memory in use above the new limit that cannot be reclaimed).
   */
  setLimits(cgroupsPath: string, limits: CgroupLimits): Promise<void>;
  /**
   * Freezes (`true`) or thaws (`false`) every process of the cgroup and the cgroups below it, and
   * resolves once the kernel reports that state (v1 `freezer.state` FROZEN/THAWED; v2
   * `cgroup.freeze` and `cgroup.events`' `frozen`). Throws when the cgroup is gone or the state is
   * not reached within `timeoutMs` (default 10 s).
   */
  setFrozen(cgroupsPath: string, frozen: boolean, timeoutMs?: number): Promise<void>;
  /** Whether the cgroup is frozen (or freezing); false when it is gone or has no freezer. */
  isFrozen(cgroupsPath: string): Promise<boolean>;
}

/** A sandbox's resource limits, as the OCI config's `linux.resources` gives them. */
export interface CgroupLimits {
  memoryBytes: number;
  cpuCores: number;
  pidsLimit: number;
}

/** The CFS period every sandbox runs with (the OCI config's `cpu.period`), in microseconds. */
export const CPU_PERIOD_US = 100_000;

/** CPU quota in microseconds per {@link CPU_PERIOD_US} for `cores` (at least 1 ms). */
export function cpuQuotaUs(cores: number): number {
  return Math.max(1000, Math.round(cores * CPU_PERIOD_US));
}

/**
 * Detects the host's layout: v2 when `<root>/cgroup.controllers` exists (a pure unified
 * hierarchy), otherwise v1. A hybrid host (v1 controllers plus an empty `unified` cgroup2 mount)
 * is v1.
 */
export async function detectCgroupLayout(root = '/sys/fs/cgroup'): Promise<CgroupLayout> {
  const unified = await access(join(root, 'cgroup.controllers')).then(
    () => true,
    () => false,
  );
  return unified ? new CgroupV2Layout(root) : new CgroupV1Layout(root);
}

/**
 * cgroup v1: one hierarchy per controller mounted at `<root>/<controller>` (symlinks such as
 * `cpu -> cpu,cpuacct` are followed for reads and skipped when walking hierarchies). Every
 * directory in `root`, `unified` and `systemd` included, counts as a hierarchy for removal.
 * An unlimited memory limit reads as `Number.MAX_SAFE_INTEGER`.
 */
export class CgroupV1Layout implements CgroupLayout {
  readonly version = 'v1';

  constructor(readonly root: string = '/sys/fs/cgroup') {}

  listPids(cgroupsPath: string): Promise<number[]> {
    return pidsBelow(join(this.root, 'pids', cgroupsPath));
  }

  async stats(cgroupsPath: string): Promise<RuntimeStats> {
    const read = (controller: string, file: string): Promise<string> => readText(join(this.root, controller, cgroupsPath, file));
    const [usage, limit, memStat, cpu, pids] = await Promise.all([
      read('memory', 'memory.usage_in_bytes'),
      read('memory', 'memory.limit_in_bytes'),
      read('memory', 'memory.stat'),
      read('cpuacct', 'cpuacct.usage'),
      read('pids', 'pids.current'),
    ]);
    return {
      memoryBytes: Math.max(0, toNumber(usage) - keyed(memStat, 'total_inactive_file')),
      memoryLimitBytes: toNumber(limit),
      cpuUsageNanos: toNumber(cpu),
      pids: toNumber(pids),
    };
  }

  async oomKills(cgroupsPath: string): Promise<number> {
    return keyed(await readText(this.oomFile(cgroupsPath)), 'oom_kill');
  }

  oomFile(cgroupsPath: string): string {
    return join(this.root, 'memory', cgroupsPath, 'memory.oom_control');
  }

  async remove(cgroupsPath: string): Promise<void> {
    for (const hierarchy of await this.hierarchies()) await removeWithParent(hierarchy, cgroupsPath);
  }

  async childNames(parentPath: string): Promise<string[]> {
    const names = new Set<string>();
    for (const hierarchy of await this.hierarchies()) {
      for (const name of await childDirs(join(hierarchy, parentPath))) names.add(name);
    }
    return [...names].sort();
  }

  killAll(_cgroupsPath: string): Promise<boolean> {
    return Promise.resolve(false);
  }

  /**
   * memory.limit_in_bytes and memory.memsw.limit_in_bytes (when swap accounting exists) in the
   * order the kernel accepts (memsw may never be below the limit), cpu.cfs_quota_us, pids.max.
   */
  async setLimits(cgroupsPath: string, limits: CgroupLimits): Promise<void> {
    const write = (controller: string, file: string, value: string | number): Promise<void> =>
      writeFile(join(this.root, controller, cgroupsPath, file), String(value), { flag: WRITE_EXISTING });
    const memsw = join(this.root, 'memory', cgroupsPath, 'memory.memsw.limit_in_bytes');
    const hasMemsw = await access(memsw).then(() => true, () => false);
    const current = toNumber(await readText(join(this.root, 'memory', cgroupsPath, 'memory.limit_in_bytes')));
    if (hasMemsw && limits.memoryBytes > current) await write('memory', 'memory.memsw.limit_in_bytes', limits.memoryBytes);
    await write('memory', 'memory.limit_in_bytes', limits.memoryBytes);
    if (hasMemsw && limits.memoryBytes <= current) await write('memory', 'memory.memsw.limit_in_bytes', limits.memoryBytes);
    await write('cpu', 'cpu.cfs_period_us', CPU_PERIOD_US);
    await write('cpu', 'cpu.cfs_quota_us', cpuQuotaUs(limits.cpuCores));
    await write('pids', 'pids.max', limits.pidsLimit);
  }

  async setFrozen(cgroupsPath: string, frozen: boolean, timeoutMs = FREEZE_TIMEOUT_MS): Promise<void> {
    const file = join(this.root, 'freezer', cgroupsPath, 'freezer.state');
    const want = frozen ? 'FROZEN' : 'THAWED';
    await writeFile(file, want, { flag: WRITE_EXISTING });
    // FREEZING until every task stopped; writing FROZEN again retries tasks that were in the middle of something.
    await waitFor(async () => {
      const state = (await readText(file)).trim();
      if (state === want) return true;
      if (frozen) await writeFile(file, want, { flag: WRITE_EXISTING });
      return false;
    }, timeoutMs, `cgroup ${cgroupsPath} did not reach ${want}`);
  }

  async isFrozen(cgroupsPath: string): Promise<boolean> {
    const state = (await readText(join(this.root, 'freezer', cgroupsPath, 'freezer.state'))).trim();
    return state === 'FROZEN' || state === 'FREEZING';
  }

  /** Absolute paths of the hierarchy mounts: the real directories (not symlinks) in `root`. */
  private async hierarchies(): Promise<string[]> {
    return (await childDirs(this.root)).map((name) => join(this.root, name));
  }
}

/**
 * cgroup v2: a single unified hierarchy at `root`. Memory usage is `memory.current` minus the
 * `inactive_file` of `memory.stat`; an unlimited `memory.max` (`max`) reads as
 * `Number.MAX_SAFE_INTEGER`; CPU time is `cpu.stat`'s `usage_usec` in nanoseconds. OOM kills come
 * from `memory.events`, which also counts kills in nested cgroups.
 */
export class CgroupV2Layout implements CgroupLayout {
  readonly version = 'v2';

  constructor(readonly root: string = '/sys/fs/cgroup') {}

  listPids(cgroupsPath: string): Promise<number[]> {
    return pidsBelow(join(this.root, cgroupsPath));
  }

  async stats(cgroupsPath: string): Promise<RuntimeStats> {
    const read = (file: string): Promise<string> => readText(join(this.root, cgroupsPath, file));
    const [current, max, memStat, cpuStat, pids] = await Promise.all([
      read('memory.current'),
      read('memory.max'),
      read('memory.stat'),
      read('cpu.stat'),
      read('pids.current'),
    ]);
    return {
      memoryBytes: Math.max(0, toNumber(current) - keyed(memStat, 'inactive_file')),
      memoryLimitBytes: toNumber(max),
      cpuUsageNanos: keyed(cpuStat, 'usage_usec') * 1000,
      pids: toNumber(pids),
    };
  }

  async oomKills(cgroupsPath: string): Promise<number> {
    return keyed(await readText(this.oomFile(cgroupsPath)), 'oom_kill');
  }

  oomFile(cgroupsPath: string): string {
    return join(this.root, cgroupsPath, 'memory.events');
  }

  remove(cgroupsPath: string): Promise<void> {
    return removeWithParent(this.root, cgroupsPath);
  }

  async childNames(parentPath: string): Promise<string[]> {
    return (await childDirs(join(this.root, parentPath))).sort();
  }

  async killAll(cgroupsPath: string): Promise<boolean> {
    // 'r+' never creates the file: a kernel without cgroup.kill (or a vanished cgroup) fails here.
    return writeFile(join(this.root, cgroupsPath, 'cgroup.kill'), '1', { flag: 'r+' }).then(
      () => true,
      () => false,
    );
  }

  /** memory.max, memory.swap.max 0 (when swap is accounted), cpu.max, pids.max. */
  async setLimits(cgroupsPath: string, limits: CgroupLimits): Promise<void> {
    const write = (file: string, value: string | number): Promise<void> => writeFile(join(this.root, cgroupsPath, file), String(value), { flag: WRITE_EXISTING });
    await write('memory.max', limits.memoryBytes);
    await write('memory.swap.max', 0).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    });
    await write('cpu.max', `${cpuQuotaUs(limits.cpuCores)} ${CPU_PERIOD_US}`);
    await write('pids.max', limits.pidsLimit);
  }

  async setFrozen(cgroupsPath: string, frozen: boolean, timeoutMs = FREEZE_TIMEOUT_MS): Promise<void> {
    await writeFile(join(this.root, cgroupsPath, 'cgroup.freeze'), frozen ? '1' : '0', { flag: WRITE_EXISTING });
    const events = join(this.root, cgroupsPath, 'cgroup.events');
    await waitFor(async () => keyed(await readText(events), 'frozen') === (frozen ? 1 : 0), timeoutMs, `cgroup ${cgroupsPath} did not ${frozen ? 'freeze' : 'thaw'}`);
  }

  async isFrozen(cgroupsPath: string): Promise<boolean> {
    return (await readText(join(this.root, cgroupsPath, 'cgroup.freeze'))).trim() === '1';
  }
}

/** How long `setFrozen` waits for the kernel to report the state asked for. */
const FREEZE_TIMEOUT_MS = 10_000;

/** Polls `reached` (every 2 ms, then up to every 50 ms) until it is true; throws `message` after `timeoutMs`. */
async function waitFor(reached: () => Promise<boolean>, timeoutMs: number, message: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 2; ; wait = Math.min(50, wait * 2)) {
    if (await reached()) return;
    if (Date.now() >= deadline) throw new Error(message);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** Open for writing without creating (a cgroup file that is missing is an error), truncating. */
const WRITE_EXISTING = constants.O_WRONLY | constants.O_TRUNC;

/** File contents, or '' when it cannot be read. */
function readText(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => '');
}

/** A single-value cgroup file as a number: `max` is MAX_SAFE_INTEGER, unreadable is 0. */
function toNumber(text: string): number {
  const value = text.trim();
  if (value === 'max') return Number.MAX_SAFE_INTEGER;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? Math.min(n, Number.MAX_SAFE_INTEGER) : 0;
}

/** The value of a `key N` line of a flat-keyed file (memory.stat, cpu.stat, memory.events); 0 when absent. */
function keyed(text: string, key: string): number {
  const match = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

/** Names of the subdirectories of `dir` (symlinks excluded); empty when it cannot be read. */
async function childDirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

/** Pids listed in `cgroup.procs` of `dir` and of every cgroup below it. */
async function pidsBelow(dir: string): Promise<number[]> {
  const own = (await readText(join(dir, 'cgroup.procs')))
    .split('\n')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
  const nested = await Promise.all((await childDirs(dir)).map((name) => pidsBelow(join(dir, name))));
  return [...new Set(own.concat(...nested))];
}

/** rmdir of `dir` after the directories below it, deepest first; errors (busy, missing) ignored. */
async function removeTree(dir: string): Promise<void> {
  for (const name of await childDirs(dir)) await removeTree(join(dir, name));
  await rmdir(dir).catch(() => undefined);
}

/** Removes `cgroupsPath` under one hierarchy, then its parent (never the hierarchy root) if empty. */
async function removeWithParent(hierarchy: string, cgroupsPath: string): Promise<void> {
  const path = posix.normalize(`/${cgroupsPath}`);
  if (path === '/') return;
  await removeTree(join(hierarchy, path));
  const parent = posix.dirname(path);
  if (parent !== '/') await rmdir(join(hierarchy, parent)).catch(() => undefined);
}

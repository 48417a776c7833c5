import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';

/**
 * The CPU weight of the cgroup every sandbox of a driver sits under, on cgroup v2's `cpu.weight`
 * scale (1–10000; 100 is what every cgroup gets by default). A weight is a share, not a limit: it
 * only matters when the CPUs are saturated, where the kernel gives each sibling cgroup (and, in a
 * v1 root cgroup, each task) CPU in proportion to its weight. Below the server's own weight, a
 * host saturated from inside sandboxes still schedules the server (and its host tools) promptly.
 */
export const DEFAULT_SANDBOX_CPU_WEIGHT = 10;

/** cgroup v1 `cpu.shares` for a v2 `cpu.weight` (systemd's conversion: weight 100 is shares 1024), at least 2. */
export function sharesOfWeight(weight: number): number {
  return Math.max(2, Math.round((weight * 1024) / 100));
}

/** The cgroup file holding a cgroup's CPU weight and the value written to it. */
export interface CpuWeightSetting {
  /** Absolute path of `cpu.shares` (v1) or `cpu.weight` (v2). */
  file: string;
  value: number;
}

/**
 * The file and value that give `cgroupPath` (absolute in the hierarchy, e.g. `/corral-oci`) the
 * CPU weight `weight`: `<root>/cpu/<path>/cpu.shares` on cgroup v1 (and the hybrid layout), or
 * `<root>/<path>/cpu.weight` on v2 (`<root>/cgroup.controllers` present).
 */
export async function cpuWeightSetting(cgroupPath: string, weight: number, root = '/sys/fs/cgroup'): Promise<CpuWeightSetting> {
  const path = posix.normalize(`/${cgroupPath}`);
  if (path === '/') throw new Error('the root cgroup has no CPU weight');
  const v2 = await exists(join(root, 'cgroup.controllers'));
  return v2 ? { file: join(root, path, 'cpu.weight'), value: Math.min(10_000, Math.max(1, Math.round(weight))) } : { file: join(root, 'cpu', path, 'cpu.shares'), value: sharesOfWeight(weight) };
}

/**
 * Gives the cgroup `cgroupPath` the CPU weight `weight` (see {@link cpuWeightSetting}), creating
 * it when `create` is set and it is missing; on v2 the `cpu` controller is enabled for the
 * cgroups below its parent first when it is not. Returns what was written, or null when the
 * cgroup does not exist and `create` is off (a Docker engine on another host keeps its cgroups
 * there). Throws when the weight cannot be written.
 */
export async function setCgroupCpuWeight(cgroupPath: string, weight: number, options: { root?: string; create?: boolean } = {}): Promise<CpuWeightSetting | null> {
  const root = options.root ?? '/sys/fs/cgroup';
  const setting = await cpuWeightSetting(cgroupPath, weight, root);
  const dir = posix.dirname(setting.file);
  if (!(await exists(dir))) {
    if (!options.create) return null;
    await mkdir(dir, { recursive: true });
  }
  if (setting.file.endsWith('cpu.weight') && !(await exists(setting.file))) {
    // v2: the parent's subtree_control decides whether the cpu controller reaches this cgroup.
    await writeFile(join(posix.dirname(dir), 'cgroup.subtree_control'), '+cpu');
  }
  const current = await readFile(setting.file, 'utf8').catch(() => '');
  if (Number(current.trim()) !== setting.value) await writeFile(setting.file, String(setting.value));
  return setting;
}

function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

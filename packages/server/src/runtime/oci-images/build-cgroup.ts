import { chown, lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type CgroupLimits, detectCgroupLayout } from '../cgroups.js';

/** A build's cgroups: what its namespace binds into its own `/sys/fs/cgroup`, and buildah's cgroup parent there. */
export interface BuildCgroups {
  /** Each hierarchy's build cgroup on the host and where it goes under `/sys/fs/cgroup` (`''`: the v2 root). */
  binds: { source: string; target: string }[];
  /** What buildah's `--cgroup-parent` is once the binds are in place: `/steps`. */
  parent: string;
}

/**
 * Makes the cgroups a build's `RUN` steps run in: `/<name>` in every hierarchy, and in it
 * `steps`, made by host root with the build's limits written on both by host root. `owner` (the
 * build namespace's root) gets only what joining `steps` takes: the directory and its
 * `cgroup.procs`/`tasks` (v2 also `cgroup.threads`). The limit files stay host root's, so a build
 * cannot raise them, and `/<name>` stays host root's, so it cannot leave or replace `steps` (runc
 * cannot remove `steps` after a step and says so in the build log; it goes with the build). The
 * build namespace binds each `/<name>` as its hierarchy's root ({@link BuildCgroups.binds}), so a
 * step sees its limits as the root's and no other cgroup. Removed, with anything left running in
 * it, by `killCgroupTree(name)`.
 */
export async function makeBuildCgroups(name: string, owner: number, limits: CgroupLimits, root = '/sys/fs/cgroup'): Promise<BuildCgroups> {
  const top = `/${name}`;
  const steps = `/${name}/steps`;
  const layout = await detectCgroupLayout(root);
  const binds: BuildCgroups['binds'] = [];
  const hierarchies: string[] = [];
  if (layout.version === 'v2') {
    hierarchies.push(root);
    binds.push({ source: join(root, name), target: '' });
    // Controllers must be enabled down to the leaf; one already enabled (or missing) is left as it is.
    await writeFile(join(root, 'cgroup.subtree_control'), '+cpu +memory +pids').catch(() => undefined);
    await mkdir(join(root, name), { recursive: true });
    await writeFile(join(root, name, 'cgroup.subtree_control'), '+cpu +memory +pids').catch(() => undefined);
    await mkdir(join(root, steps), { recursive: true });
  } else {
    for (const entry of await readdir(root)) {
      const dir = join(root, entry);
      // Links (cpu -> cpu,cpuacct) name a hierarchy listed under its own name; `unified` is a hybrid host's empty v2 mount.
      if (entry === 'unified' || !(await lstat(dir)).isDirectory()) continue;
      hierarchies.push(dir);
      binds.push({ source: join(dir, name), target: entry });
      await mkdir(join(dir, steps), { recursive: true });
    }
    // A v1 cpuset takes no task until it has CPUs and memory nodes: the host's, level by level.
    for (const level of [top, steps]) {
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        const value = await readFile(join(root, 'cpuset', file), 'utf8').catch(() => undefined);
        if (value !== undefined) await writeFile(join(root, 'cpuset', level, file), value.trim());
      }
    }
  }
  await layout.setLimits(top, limits);
  await layout.setLimits(steps, limits);
  for (const hierarchy of hierarchies) {
    const dir = join(hierarchy, steps);
    await chown(dir, owner, owner);
    for (const file of ['cgroup.procs', 'tasks', 'cgroup.threads']) await chown(join(dir, file), owner, owner).catch(() => undefined);
  }
  return { binds, parent: '/steps' };
}

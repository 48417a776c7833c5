import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CgroupV1Layout, CgroupV2Layout, detectCgroupLayout } from './cgroups.js';

const SANDBOX = '/corral-oci/inst/box1';
const MiB = 1024 * 1024;

/** Writes `files` (paths relative to `root`), creating directories as needed. */
async function tree(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
}

/** Creates empty directories (fake cgroups rmdir only when empty, like real ones without tasks). */
async function dirs(root: string, paths: string[]): Promise<void> {
  for (const path of paths) await mkdir(join(root, path), { recursive: true });
}

const temps: string[] = [];
async function tempRoot(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'corral-cgroups-'));
  temps.push(dir);
  return dir;
}
after(async () => {
  for (const dir of temps) await rm(dir, { recursive: true, force: true });
});

describe('cgroups: v1 layout', () => {
  async function v1Root(): Promise<string> {
    const root = await tempRoot();
    await tree(root, {
      [`memory${SANDBOX}/memory.usage_in_bytes`]: `${100 * MiB}\n`,
      [`memory${SANDBOX}/memory.limit_in_bytes`]: `${256 * MiB}\n`,
      [`memory${SANDBOX}/memory.stat`]: `cache 1024\nrss 4096\ninactive_file 999\ntotal_cache 2048\ntotal_inactive_file ${30 * MiB}\n`,
      [`memory${SANDBOX}/memory.oom_control`]: 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
      [`cpuacct${SANDBOX}/cpuacct.usage`]: '123456789\n',
      [`pids${SANDBOX}/pids.current`]: '3\n',
      [`pids${SANDBOX}/cgroup.procs`]: '101\n102\n',
      [`pids${SANDBOX}/nested/cgroup.procs`]: '103\n',
      'unified/cgroup.controllers': '',
    });
    return root;
  }

  it('is detected when the root has no cgroup.controllers (hybrid counts as v1)', async () => {
    const root = await v1Root();
    const layout = await detectCgroupLayout(root);
    assert.equal(layout.version, 'v1');
    assert.equal(layout.root, root);
  });

  it('reads pids (nested included), stats and OOM kills', async () => {
    const root = await v1Root();
    const cg = new CgroupV1Layout(root);
    assert.deepEqual((await cg.listPids(SANDBOX)).sort(), [101, 102, 103]);
    assert.deepEqual(await cg.stats(SANDBOX), { memoryBytes: 70 * MiB, memoryLimitBytes: 256 * MiB, cpuUsageNanos: 123456789, pids: 3 });
    assert.equal(await cg.oomKills(SANDBOX), 2);
    assert.equal(cg.oomFile(SANDBOX), join(root, 'memory', SANDBOX, 'memory.oom_control'));
  });

  it('reads an unlimited memory limit as MAX_SAFE_INTEGER and missing files as zeros', async () => {
    const root = await v1Root();
    await writeFile(join(root, 'memory', SANDBOX, 'memory.limit_in_bytes'), '9223372036854771712\n');
    const cg = new CgroupV1Layout(root);
    assert.equal((await cg.stats(SANDBOX)).memoryLimitBytes, Number.MAX_SAFE_INTEGER);
    assert.deepEqual(await cg.stats('/gone'), { memoryBytes: 0, memoryLimitBytes: 0, cpuUsageNanos: 0, pids: 0 });
    assert.deepEqual(await cg.listPids('/gone'), []);
    assert.equal(await cg.oomKills('/gone'), 0);
  });

  it('removes the cgroup from every hierarchy, nested dirs first, then the empty parent', async () => {
    const root = await tempRoot();
    await dirs(root, ['memory/corral-oci/inst/box1/a/b', 'pids/corral-oci/inst/box1', 'unified/corral-oci/inst/box1', 'cpu,cpuacct/corral-oci/inst/box1', 'cpu,cpuacct/corral-oci/inst/box2', 'freezer']);
    await symlink('cpu,cpuacct', join(root, 'cpuacct'));
    await new CgroupV1Layout(root).remove(SANDBOX);
    for (const h of ['memory', 'pids', 'unified', 'cpu,cpuacct']) assert.equal(existsSync(join(root, h, SANDBOX)), false, h);
    for (const h of ['memory', 'pids', 'unified']) assert.equal(existsSync(join(root, h, 'corral-oci/inst')), false, h);
    assert.ok(existsSync(join(root, 'cpu,cpuacct/corral-oci/inst/box2')), 'a parent with another sandbox stays');
    assert.ok(existsSync(join(root, 'memory/corral-oci')), 'only the immediate parent is removed');
    await new CgroupV1Layout(join(root, 'nowhere')).remove(SANDBOX);
  });

  it('lists child names across hierarchies without duplicates', async () => {
    const root = await tempRoot();
    await dirs(root, ['memory/corral-oci/inst/a', 'memory/corral-oci/inst/b', 'pids/corral-oci/inst/b', 'unified/corral-oci/inst/c', 'pids/other']);
    await tree(root, { 'memory/corral-oci/inst/memory.stat': '' });
    const cg = new CgroupV1Layout(root);
    assert.deepEqual(await cg.childNames('/corral-oci/inst'), ['a', 'b', 'c']);
    assert.deepEqual(await cg.childNames('/missing'), []);
  });

  it('sets memory (memsw equal: no swap), CPU quota and pids limits of a running sandbox, and fails for a vanished cgroup', async () => {
    const root = await v1Root();
    await tree(root, {
      [`memory${SANDBOX}/memory.memsw.limit_in_bytes`]: `${256 * MiB}\n`,
      [`cpu${SANDBOX}/cpu.cfs_period_us`]: '100000\n',
      [`cpu${SANDBOX}/cpu.cfs_quota_us`]: '-1\n',
      [`pids${SANDBOX}/pids.max`]: 'max\n',
    });
    const layout = new CgroupV1Layout(root);
    for (const memoryBytes of [512 * MiB, 64 * MiB]) {
      await layout.setLimits(SANDBOX, { memoryBytes, cpuCores: 0.5, pidsLimit: 77 });
      assert.equal(await readFile(join(root, `memory${SANDBOX}/memory.limit_in_bytes`), 'utf8'), String(memoryBytes));
      assert.equal(await readFile(join(root, `memory${SANDBOX}/memory.memsw.limit_in_bytes`), 'utf8'), String(memoryBytes));
    }
    assert.equal(await readFile(join(root, `cpu${SANDBOX}/cpu.cfs_quota_us`), 'utf8'), '50000');
    assert.equal(await readFile(join(root, `pids${SANDBOX}/pids.max`), 'utf8'), '77');
    await assert.rejects(layout.setLimits('/corral-oci/inst/gone', { memoryBytes: MiB, cpuCores: 1, pidsLimit: 1 }));
  });

  it('cannot kill through the cgroup', async () => {
    assert.equal(await new CgroupV1Layout(await v1Root()).killAll(SANDBOX), false);
  });
});

describe('cgroups: v2 layout', () => {
  async function v2Root(): Promise<string> {
    const root = await tempRoot();
    await tree(root, {
      'cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma misc\n',
      [`${SANDBOX}/memory.current`]: `${64 * MiB}\n`,
      [`${SANDBOX}/memory.max`]: `${128 * MiB}\n`,
      [`${SANDBOX}/memory.stat`]: `anon 4096\nfile 8192\nactive_file 100\ninactive_file ${16 * MiB}\n`,
      [`${SANDBOX}/memory.events`]: 'low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n',
      [`${SANDBOX}/cpu.stat`]: 'usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 0\n',
      [`${SANDBOX}/pids.current`]: '4\n',
      [`${SANDBOX}/cgroup.procs`]: '',
      [`${SANDBOX}/cgroup.kill`]: '',
      [`${SANDBOX}/init/cgroup.procs`]: '201\n',
      [`${SANDBOX}/work/cgroup.procs`]: '202\n',
      [`${SANDBOX}/work/deeper/cgroup.procs`]: '203\n204\n',
    });
    return root;
  }

  it('is detected by cgroup.controllers at the root', async () => {
    const root = await v2Root();
    const layout = await detectCgroupLayout(root);
    assert.equal(layout.version, 'v2');
    assert.equal(layout.root, root);
  });

  it('reads pids from every leaf, stats and OOM kills', async () => {
    const root = await v2Root();
    const cg = new CgroupV2Layout(root);
    assert.deepEqual((await cg.listPids(SANDBOX)).sort(), [201, 202, 203, 204]);
    assert.deepEqual(await cg.stats(SANDBOX), { memoryBytes: 48 * MiB, memoryLimitBytes: 128 * MiB, cpuUsageNanos: 1_234_000, pids: 4 });
    assert.equal(await cg.oomKills(SANDBOX), 1);
    assert.equal(cg.oomFile(SANDBOX), join(root, SANDBOX, 'memory.events'));
  });

  it('reads memory.max "max" as MAX_SAFE_INTEGER and missing files as zeros', async () => {
    const root = await v2Root();
    await writeFile(join(root, SANDBOX, 'memory.max'), 'max\n');
    const cg = new CgroupV2Layout(root);
    assert.equal((await cg.stats(SANDBOX)).memoryLimitBytes, Number.MAX_SAFE_INTEGER);
    assert.deepEqual(await cg.stats('/gone'), { memoryBytes: 0, memoryLimitBytes: 0, cpuUsageNanos: 0, pids: 0 });
    assert.deepEqual(await cg.listPids('/gone'), []);
    assert.equal(await cg.oomKills('/gone'), 0);
  });

  it('removes nested cgroups deepest first, then the empty parent', async () => {
    const root = await tempRoot();
    await dirs(root, ['corral-oci/inst/box1/init', 'corral-oci/inst/box1/work/deeper']);
    const cg = new CgroupV2Layout(root);
    await cg.remove(SANDBOX);
    assert.equal(existsSync(join(root, 'corral-oci/inst')), false);
    assert.ok(existsSync(join(root, 'corral-oci')));
    await dirs(root, ['corral-oci/inst/box1', 'corral-oci/inst/box2']);
    await cg.remove(SANDBOX);
    assert.equal(existsSync(join(root, SANDBOX)), false);
    assert.ok(existsSync(join(root, 'corral-oci/inst/box2')), 'a parent with another sandbox stays');
    await cg.remove('/gone/box');
  });

  it('sets memory.max, no swap, cpu.max and pids.max of a running sandbox', async () => {
    const root = await v2Root();
    await tree(root, { [`${SANDBOX}/memory.swap.max`]: 'max\n', [`${SANDBOX}/cpu.max`]: 'max 100000\n', [`${SANDBOX}/pids.max`]: 'max\n' });
    await new CgroupV2Layout(root).setLimits(SANDBOX, { memoryBytes: 300 * MiB, cpuCores: 2, pidsLimit: 42 });
    const read = (file: string): Promise<string> => readFile(join(root, SANDBOX, file), 'utf8');
    assert.deepEqual(await Promise.all(['memory.max', 'memory.swap.max', 'cpu.max', 'pids.max'].map(read)), [String(300 * MiB), '0', '200000 100000', '42']);
  });

  it('lists child names', async () => {
    const root = await v2Root();
    await dirs(root, ['corral-oci/inst/box2']);
    const cg = new CgroupV2Layout(root);
    assert.deepEqual(await cg.childNames('/corral-oci/inst'), ['box1', 'box2']);
    assert.deepEqual(await cg.childNames('/missing'), []);
  });

  it('kills through cgroup.kill when present', async () => {
    const root = await v2Root();
    const cg = new CgroupV2Layout(root);
    assert.equal(await cg.killAll(SANDBOX), true);
    assert.equal(await readFile(join(root, SANDBOX, 'cgroup.kill'), 'utf8'), '1');
    assert.equal(await cg.killAll(`${SANDBOX}/init`), false, 'no cgroup.kill file');
    assert.equal(existsSync(join(root, SANDBOX, 'init', 'cgroup.kill')), false, 'the file is not created');
  });
});

const hostSkip = process.platform !== 'linux' ? 'not Linux' : process.getuid?.() !== 0 ? 'needs root' : !existsSync('/sys/fs/cgroup') ? 'no /sys/fs/cgroup' : false;

describe('cgroups: this host', { skip: hostSkip }, () => {
  const name = `corral-cgtest-${randomBytes(4).toString('hex')}`;
  const cgroupsPath = `/${name}/box`;
  const created: string[] = [];
  let child: ChildProcess | undefined;

  after(async () => {
    child?.kill('SIGKILL');
    for (const dir of created.reverse()) await rmdir(dir).catch(() => undefined);
  });

  it('detects the layout, tracks a process and removes the cgroup', async () => {
    const mounted = readFileSync('/proc/self/mounts', 'utf8');
    const pureV2 = /^\S+ \/sys\/fs\/cgroup cgroup2 /m.test(mounted);
    const layout = await detectCgroupLayout();
    assert.equal(layout.version, pureV2 ? 'v2' : 'v1');

    const hierarchies = layout.version === 'v1' ? ['pids', 'memory'].map((c) => join(layout.root, c)) : [layout.root];
    for (const h of hierarchies) {
      for (const dir of [join(h, name), join(h, cgroupsPath)]) {
        await mkdir(dir);
        created.push(dir);
      }
    }
    const sleeper = spawn('sleep', ['5'], { stdio: 'ignore' });
    child = sleeper;
    const pid = sleeper.pid;
    assert.ok(pid);
    for (const h of hierarchies) await writeFile(join(h, cgroupsPath, 'cgroup.procs'), String(pid));

    assert.ok((await layout.listPids(cgroupsPath)).includes(pid));
    const stats = await layout.stats(cgroupsPath);
    assert.ok(stats.pids >= 1, `pids ${stats.pids}`);
    assert.ok(stats.memoryLimitBytes > 0);
    assert.equal(await layout.oomKills(cgroupsPath), 0);
    assert.ok(existsSync(layout.oomFile(cgroupsPath)), layout.oomFile(cgroupsPath));
    assert.ok((await layout.childNames(`/${name}`)).includes('box'));

    const exited = new Promise((resolve) => sleeper.once('exit', resolve));
    const killed = await layout.killAll(cgroupsPath);
    if (layout.version === 'v1') assert.equal(killed, false);
    else assert.equal(killed, existsSync(join(layout.root, cgroupsPath, 'cgroup.kill')));
    if (!killed) sleeper.kill('SIGKILL');
    await exited;

    // The kernel drops an exited task from cgroup.procs asynchronously; rmdir fails (EBUSY) until it has.
    for (let i = 0; i < 50 && (await layout.listPids(cgroupsPath)).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    await layout.remove(cgroupsPath);
    for (const h of hierarchies) {
      assert.equal(existsSync(join(h, cgroupsPath)), false, join(h, cgroupsPath));
      assert.equal(existsSync(join(h, name)), false, join(h, name));
    }
  });
});

describe('cgroups: freezing (fake hierarchies; the real freezer is covered by the oci conformance pause case)', () => {
  it('v1 writes freezer.state and resolves once it reads the state asked for; isFrozen follows it', async () => {
    const root = await tempRoot();
    await tree(root, { [`freezer${SANDBOX}/freezer.state`]: 'THAWED\n' });
    const layout = new CgroupV1Layout(root);
    assert.equal(await layout.isFrozen(SANDBOX), false);
    await layout.setFrozen(SANDBOX, true, 1_000);
    assert.equal(await readFile(join(root, `freezer${SANDBOX}/freezer.state`), 'utf8'), 'FROZEN');
    assert.equal(await layout.isFrozen(SANDBOX), true);
    await layout.setFrozen(SANDBOX, false, 1_000);
    assert.equal(await layout.isFrozen(SANDBOX), false);
  });

  it('v1 and v2 fail (never hang) when the cgroup is gone, v2 when the kernel never reports the state', async () => {
    const root = await tempRoot();
    await assert.rejects(new CgroupV1Layout(root).setFrozen(SANDBOX, true, 200));
    await assert.rejects(new CgroupV2Layout(root).setFrozen(SANDBOX, true, 200));
    assert.equal(await new CgroupV1Layout(root).isFrozen(SANDBOX), false);
    await tree(root, { [`${SANDBOX.slice(1)}/cgroup.freeze`]: '0\n', [`${SANDBOX.slice(1)}/cgroup.events`]: 'populated 1\nfrozen 0\n' });
    const v2 = new CgroupV2Layout(root);
    await assert.rejects(v2.setFrozen(SANDBOX, true, 200), /did not freeze/);
    assert.equal(await v2.isFrozen(SANDBOX), true, 'cgroup.freeze was written');
    await writeFile(join(root, `${SANDBOX.slice(1)}/cgroup.events`), 'populated 1\nfrozen 1\n');
    await v2.setFrozen(SANDBOX, true, 1_000);
  });
});

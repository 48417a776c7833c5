import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chmod, copyFile, cp, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RuntimeError } from '../runtime.js';
import { criuCandidates, dumpProcesses, errorLines, memoryCheckpointRefusal, probeCriu, restoreProcesses } from './criu-checkpoint.js';

const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const BUSYBOX = '/bin/busybox';

describe('criu checkpoint: refusals and log parsing', () => {
  it('refuses crun, user-namespaced sandboxes and the agent init up front, with the reason', () => {
    assert.match(memoryCheckpointRefusal({ runtimeBinary: 'crun', userns: false, agentInit: false }) ?? '', /without CRIU/);
    assert.match(memoryCheckpointRefusal({ runtimeBinary: 'runc', userns: true, agentInit: true }) ?? '', /user namespace.*filesystem checkpoint still works/);
    assert.match(memoryCheckpointRefusal({ runtimeBinary: 'runc', userns: false, agentInit: true }) ?? '', /exec socket/);
    assert.equal(memoryCheckpointRefusal({ runtimeBinary: 'runc', userns: false, agentInit: false }), undefined);
  });

  it("keeps CRIU's error lines without the RLIMIT noise", () => {
    const log = [
      '(00.057377) Error (criu/util.c:1533): rlimit: Can\'t setup RLIMIT_NOFILE for self: Operation not permitted',
      '(00.035098)      1: Found id extRootNetNS (fd 16) in inherit fd list',
      '(00.035162)      1: Error (criu/namespaces.c:258): Can\'t setns 16/net: Operation not permitted',
    ].join('\n');
    assert.deepEqual(errorLines(log), ["Error (criu/namespaces.c:258): Can't setns 16/net: Operation not permitted"]);
  });
});

async function missing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync(BUSYBOX)) return `${BUSYBOX} missing (busybox-static; scripts/ensure-oci.sh installs it)`;
  try {
    execFileSync('runc', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'runc missing (scripts/ensure-oci.sh)';
  }
  const probe = await probeCriu(criuCandidates(CACHE));
  return probe.ok ? undefined : probe.reason;
}

const reason = await missing();
if (reason && process.env.CI === 'true') throw new Error(`criu-checkpoint.test.ts cannot run: ${reason}`);

describe('criu checkpoint: a counter keeps counting in every restored copy', { skip: reason }, () => {
  const tag = randomBytes(4).toString('hex');
  const cleanups: (() => Promise<void>)[] = [];
  let dir = '';

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
    // runc removes each container's cgroup; the parent it made for them is the test's.
    for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
      await rmdir(join('/sys/fs/cgroup', hierarchy, 'corral-criu-test')).catch(() => undefined);
    }
    await rmdir('/sys/fs/cgroup/corral-criu-test').catch(() => undefined);
  });

  const runc = (root: string, ...args: string[]): string => execFileSync('runc', ['--root', root, ...args], { encoding: 'utf8' });

  async function netns(name: string): Promise<string> {
    execFileSync('ip', ['netns', 'add', name]);
    cleanups.push(async () => void execFileSync('ip', ['netns', 'del', name]));
    execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return `/run/netns/${name}`;
  }

  async function bundle(name: string, rootfs: string, netnsPath: string): Promise<string> {
    const bundleDir = join(dir, name);
    await mkdir(bundleDir, { recursive: true });
    execFileSync('runc', ['spec', '--bundle', bundleDir]);
    const config = JSON.parse(await readFile(join(bundleDir, 'config.json'), 'utf8')) as {
      process: { terminal: boolean; args: string[] };
      root: { path: string; readonly: boolean };
      linux: { namespaces: { type: string; path?: string }[]; cgroupsPath?: string };
    };
    config.process.terminal = false;
    // The count lives only in the shell's memory; each tick prints it.
    config.process.args = ['/bin/sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done'];
    config.root = { path: rootfs, readonly: false };
    config.linux.namespaces = config.linux.namespaces.map((ns) => (ns.type === 'network' ? { type: 'network', path: netnsPath } : ns));
    config.linux.cgroupsPath = `/corral-criu-test/${name}`;
    await writeFile(join(bundleDir, 'config.json'), JSON.stringify(config));
    return bundleDir;
  }

  async function lastValue(file: string): Promise<number> {
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    return Number(lines[lines.length - 1]);
  }

  async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
    for (let i = 0; i < 300; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`timed out waiting for ${what}`);
  }

  it('dumps a running container (left running) and restores it into two new containers, each continuing from the captured count', async () => {
    dir = await mkdtemp(join(tmpdir(), 'corral-criu-'));
    const root = join(dir, 'runc');
    const rootfs = join(dir, 'rootfs-original');
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await copyFile(BUSYBOX, join(rootfs, 'bin', 'busybox'));
    await chmod(join(rootfs, 'bin', 'busybox'), 0o755);
    for (const tool of ['sh', 'sleep']) await symlink('busybox', join(rootfs, 'bin', tool));
    for (const d of ['proc', 'dev', 'sys', 'tmp']) await mkdir(join(rootfs, d), { recursive: true });

    const original = `criu-test-${tag}-0`;
    const originalOut = join(dir, 'original.out');
    const originalBundle = await bundle(original, rootfs, await netns(original));
    // The container's stdout must be a pipe(2) (runc hands pipes back to CRIU by name on restore;
    // node's own 'pipe' stdio is a socketpair, which CRIU cannot dump here).
    const script = `runc --root "$1" run --detach "$2" </dev/null 2>&1 | cat > "$3"`;
    const relay = spawn('sh', ['-c', script, 'sh', root, original, originalOut], { cwd: originalBundle, stdio: 'ignore', detached: true });
    cleanups.push(async () => {
      runc(root, 'delete', '--force', original);
      if (relay.pid) process.kill(-relay.pid, 'SIGKILL');
    });
    await waitFor(async () => (await lastValue(originalOut).catch(() => 0)) >= 20, 'the original to count to 20');

    const image = join(dir, 'image');
    await mkdir(image);
    await mkdir(join(dir, 'work-dump'));
    const before = await lastValue(originalOut);
    await dumpProcesses({ criuPath: (await probeCriuPath()), runtimeRoot: root, containerId: original, imageDir: image, workDir: join(dir, 'work-dump') });
    const afterDump = await lastValue(originalOut);
    // Left running: the original goes on counting.
    await waitFor(async () => (await lastValue(originalOut)) > afterDump + 2, 'the original to go on after the dump');

    for (const n of [1, 2]) {
      const id = `criu-test-${tag}-${n}`;
      const copy = join(dir, `rootfs-${n}`);
      await cp(rootfs, copy, { recursive: true, verbatimSymlinks: true });
      const nsPath = await netns(id);
      const bundleDir = await bundle(id, copy, nsPath);
      const outFile = join(dir, `${id}.out`);
      const handle = await open(outFile, 'w');
      cleanups.push(async () => {
        runc(root, 'delete', '--force', id);
        await handle.close();
      });
      const work = join(dir, `work-${id}`);
      await mkdir(work);
      await restoreProcesses({ criuPath: await probeCriuPath(), runtimeRoot: root, containerId: id, bundleDir, imageDir: image, workDir: work, outputFd: handle.fd });
      await waitFor(async () => (await readFile(outFile, 'utf8')).trim().split('\n').length >= 3, `restored copy ${n} to print`);
      const values = (await readFile(outFile, 'utf8')).trim().split('\n').map(Number);
      // It continues from the captured count (not from 1), one by one.
      assert.ok(values[0]! > before && values[0]! <= afterDump + 1, `copy ${n} starts at ${values[0]}, dump was between ${before} and ${afterDump}`);
      values.forEach((v, i) => assert.equal(v, values[0]! + i));
      // It runs in its own network namespace and cgroup, not the original's.
      const state = JSON.parse(runc(root, 'state', id)) as { pid: number; status: string };
      assert.equal(state.status, 'running');
      assert.equal(await readlink(`/proc/${state.pid}/ns/net`), `net:[${statSync(nsPath).ino}]`);
      assert.match(await readFile(`/proc/${state.pid}/cgroup`, 'utf8'), new RegExp(`/corral-criu-test/${id}`));
    }
  });

  async function probeCriuPath(): Promise<string> {
    const probe = await probeCriu(criuCandidates(CACHE));
    if (!probe.ok) throw new RuntimeError('CHECKPOINT_FAILED', probe.reason);
    return probe.path;
  }
});

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chmod, chown, copyFile, cp, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { ensureAgentBinary } from '../native-build.js';
import { criuCandidates, detachNetworkNamespace, dumpConfig, dumpProcesses, errorLines, memoryCheckpointRefusal, probeCriu, restoreConfig, restoreProcesses } from './criu-checkpoint.js';
import { createOwnedNetns, DEFAULT_USERNS_MAPPING, removeKeptNamespace } from './userns.js';

const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const BUSYBOX = '/bin/busybox';
const MAPPING = DEFAULT_USERNS_MAPPING;


/**
 * `lsns` of one process: its namespaces and their owners. lsns scans every process, and
 * util-linux 2.38 exits 1 with no message when one of them ends during the scan (util-linux#2799,
 * fixed in 2.40.3), which a busy CI host hit: a few tries.
 */
function namespacesOf(pid: number): string {
  for (let attempt = 1; ; attempt++) {
    try {
      return execFileSync('lsns', ['-n', '-p', String(pid), '-o', 'TYPE,NS,ONS'], { encoding: 'utf8' });
    } catch (error) {
      if (attempt >= 5) throw error;
    }
  }
}
describe('criu checkpoint: refusals, log parsing, image rewrite', () => {
  it('refuses crun and a missing CRIU up front, with the reason', () => {
    const criu = { ok: true as const, path: '/x/criu', version: '4.1.1' };
    assert.match(memoryCheckpointRefusal({ runtimeBinary: 'crun', criu }) ?? '', /crun is built without CRIU.*CORRAL_OCI_RUNTIME=runc/);
    assert.match(memoryCheckpointRefusal({ runtimeBinary: 'runc', criu: { ok: false, reason: 'no working CRIU (run scripts/ensure-criu.sh)' } }) ?? '', /ensure-criu/);
    assert.match(memoryCheckpointRefusal({ runtimeBinary: 'runc', criu: undefined }) ?? '', /not probed/);
    assert.equal(memoryCheckpointRefusal({ runtimeBinary: 'runc', criu }), undefined);
  });

  it("hands the restore the shim's exec socket (runc's stdin) in place of the dumped one; TCP connections are dumped and come back closed", () => {
    assert.deepEqual(restoreConfig({ socketInode: 4242 }).trim().split('\n'), ['inherit-fd fd[0]:socket:[4242]', 'tcp-close']);
    assert.equal(dumpConfig(), 'tcp-established\n');
  });

  it("keeps CRIU's error lines without the RLIMIT noise", () => {
    const log = [
      "(00.057377) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted",
      '(00.035098)      1: Found id extRootNetNS (fd 16) in inherit fd list',
      "(00.035162)      1: Error (criu/namespaces.c:258): Can't setns 16/net: Operation not permitted",
    ].join('\n');
    assert.deepEqual(errorLines(log), ["Error (criu/namespaces.c:258): Can't setns 16/net: Operation not permitted"]);
  });

  it("drops the network namespace's external key from netns-*.img and keeps the rest", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'corral-criu-img-'));
    try {
      const magic = Buffer.from('54564319b0d2cb7f', 'hex');
      const entry = new BinaryWriter().tag(1, WireType.Varint).int32(7).tag(8, WireType.LengthDelimited).string('extRootNetNS').finish();
      const size = Buffer.alloc(4);
      size.writeUInt32LE(entry.length);
      await writeFile(join(dir, 'netns-10.img'), Buffer.concat([magic, size, entry]));
      await writeFile(join(dir, 'pstree.img'), 'untouched');
      assert.equal(await detachNetworkNamespace(dir), 1);
      const image = await readFile(join(dir, 'netns-10.img'));
      assert.deepEqual(image.subarray(0, 8), magic);
      const message = image.subarray(12, 12 + image.readUInt32LE(8));
      assert.equal(image.length, 12 + message.length);
      const reader = new BinaryReader(message);
      assert.deepEqual(reader.tag(), [1, WireType.Varint]);
      assert.equal(reader.int32(), 7);
      assert.equal(reader.pos, reader.len);
      assert.equal(await readFile(join(dir, 'pstree.img'), 'utf8'), 'untouched');
      assert.equal(await detachNetworkNamespace(dir), 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
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

interface Config {
  process: { terminal: boolean; args: string[] };
  root: { path: string; readonly: boolean };
  linux: {
    namespaces: { type: string; path?: string }[];
    cgroupsPath?: string;
    uidMappings?: { containerID: number; hostID: number; size: number }[];
    gidMappings?: { containerID: number; hostID: number; size: number }[];
  };
  mounts: { destination: string }[];
}

describe('criu checkpoint: a counter keeps counting in every restored copy', { skip: reason }, () => {
  const tag = randomBytes(4).toString('hex');
  const cleanups: (() => Promise<void>)[] = [];
  const dirs: string[] = [];
  const criuPath = async (): Promise<string> => {
    const probe = await probeCriu(criuCandidates(CACHE));
    assert.ok(probe.ok);
    return probe.path;
  };

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    // runc removes each container's cgroup; the parent it made for them is the test's.
    for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
      await rmdir(join('/sys/fs/cgroup', hierarchy, 'corral-criu-test')).catch(() => undefined);
    }
    await rmdir('/sys/fs/cgroup/corral-criu-test').catch(() => undefined);
  });

  const runc = (root: string, ...args: string[]): string => execFileSync('runc', ['--root', root, ...args], { encoding: 'utf8' });

  async function hostNetns(name: string): Promise<string> {
    execFileSync('ip', ['netns', 'add', name]);
    cleanups.push(async () => void execFileSync('ip', ['netns', 'del', name]));
    execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return `/run/netns/${name}`;
  }

  /** A bundle running the counter; `namespaces` replaces the user/network entries of runc's default spec. */
  async function bundle(dir: string, name: string, rootfs: string, namespaces: { type: string; path?: string }[], mapped: boolean): Promise<string> {
    const bundleDir = join(dir, name);
    await mkdir(bundleDir, { recursive: true });
    execFileSync('runc', ['spec', '--bundle', bundleDir]);
    const config = JSON.parse(await readFile(join(bundleDir, 'config.json'), 'utf8')) as Config;
    config.process.terminal = false;
    // The count lives only in the shell's memory; each tick prints it.
    config.process.args = ['/bin/sh', '-c', 'i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done'];
    config.root = { path: rootfs, readonly: false };
    config.linux.namespaces = [...config.linux.namespaces.filter((ns) => ns.type !== 'network' && ns.type !== 'user'), ...namespaces];
    if (mapped) {
      const range = [{ containerID: 0, hostID: MAPPING.hostUid, size: MAPPING.size }];
      config.linux.uidMappings = range;
      config.linux.gidMappings = [{ containerID: 0, hostID: MAPPING.hostGid, size: MAPPING.size }];
      // sysfs needs a network namespace owned by the container's user namespace at start; not needed here.
      config.mounts = config.mounts.filter((m) => m.destination !== '/sys');
    }
    config.linux.cgroupsPath = `/corral-criu-test/${name}`;
    await writeFile(join(bundleDir, 'config.json'), JSON.stringify(config));
    return bundleDir;
  }

  async function values(file: string): Promise<number[]> {
    return (await readFile(file, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map(Number);
  }

  async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
    for (let i = 0; i < 300; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`timed out waiting for ${what}`);
  }

  async function statusLines(pid: number): Promise<string[]> {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    return status.split('\n').filter((l) => /^(NoNewPrivs|Seccomp|CapInh|CapPrm|CapEff|CapBnd|CapAmb|Uid|Gid):/.test(l));
  }

  /**
   * Runs the counter, dumps it (left running) and restores it twice into new containers; each
   * must continue from the captured count. Returns the restored containers' pids.
   */
  async function forkTwice(kind: 'host-netns' | 'userns'): Promise<{ root: string; pids: number[]; originalPid: number }> {
    const dir = await mkdtemp(join(tmpdir(), 'corral-criu-'));
    dirs.push(dir);
    await chmod(dir, 0o755); // the mapped root must reach the rootfs
    const root = join(dir, 'runc');
    const rootfs = join(dir, 'rootfs-original');
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await copyFile(BUSYBOX, join(rootfs, 'bin', 'busybox'));
    await chmod(join(rootfs, 'bin', 'busybox'), 0o755);
    for (const tool of ['sh', 'sleep']) await symlink('busybox', join(rootfs, 'bin', tool));
    for (const d of ['proc', 'dev', 'sys', 'tmp']) await mkdir(join(rootfs, d), { recursive: true });
    if (kind === 'userns') execFileSync('chown', ['-hR', `${MAPPING.hostUid}:${MAPPING.hostGid}`, rootfs]);

    const original = `criu-test-${tag}-${kind}-0`;
    let namespaces: { type: string; path?: string }[];
    if (kind === 'userns') {
      // Corral's pair: a user namespace owning its network namespace, both joined by path.
      const agent = await ensureAgentBinary(join(CACHE, 'native-test'));
      const usernsPath = `/run/corral-oci/userns/${original}`;
      const netnsPath = `/run/netns/${original}`;
      await createOwnedNetns(MAPPING, usernsPath, netnsPath, agent);
      cleanups.push(async () => {
        await removeKeptNamespace(netnsPath);
        await removeKeptNamespace(usernsPath);
      });
      namespaces = [{ type: 'user', path: usernsPath }, { type: 'network', path: netnsPath }];
    } else {
      namespaces = [{ type: 'network', path: await hostNetns(original) }];
    }
    const originalBundle = await bundle(dir, original, rootfs, namespaces, kind === 'userns');
    const originalOut = join(dir, 'original.out');
    // The container's stdout must be a pipe(2) (runc hands pipes back to CRIU by name on restore;
    // node's own 'pipe' stdio is a socketpair, which CRIU cannot dump here).
    const script = 'runc --root "$1" run --detach "$2" </dev/null 2>&1 | cat > "$3"';
    const relay = spawn('sh', ['-c', script, 'sh', root, original, originalOut], { cwd: originalBundle, stdio: 'ignore', detached: true });
    cleanups.push(async () => {
      runc(root, 'delete', '--force', original);
      if (relay.pid) process.kill(-relay.pid, 'SIGKILL');
    });
    await waitFor(async () => (await values(originalOut)).length >= 20, 'the original to count to 20');
    const originalPid = (JSON.parse(runc(root, 'state', original)) as { pid: number }).pid;

    const image = join(dir, 'image');
    await mkdir(image);
    await mkdir(join(dir, 'work-dump'));
    const before = (await values(originalOut)).at(-1)!;
    await dumpProcesses({ criuPath: await criuPath(), runtimeRoot: root, containerId: original, imageDir: image, workDir: join(dir, 'work-dump') });
    const afterDump = (await values(originalOut)).at(-1)!;
    // Left running: the original goes on counting.
    await waitFor(async () => (await values(originalOut)).at(-1)! > afterDump + 2, 'the original to go on after the dump');
    if (kind === 'userns') assert.equal(await detachNetworkNamespace(image), 1);

    const pids: number[] = [];
    for (const n of [1, 2]) {
      const id = `criu-test-${tag}-${kind}-${n}`;
      const copy = join(dir, `rootfs-${n}`);
      await cp(rootfs, copy, { recursive: true, verbatimSymlinks: true });
      if (kind === 'userns') await chown(copy, MAPPING.hostUid, MAPPING.hostGid);
      // userns: runc makes the user namespace (the dumped mapping) and CRIU an empty network namespace in it.
      const restoredNamespaces: { type: string; path?: string }[] = kind === 'userns' ? [{ type: 'user' }, { type: 'network' }] : [{ type: 'network', path: await hostNetns(id) }];
      const bundleDir = await bundle(dir, id, copy, restoredNamespaces, kind === 'userns');
      const outFile = join(dir, `${id}.out`);
      const handle = await open(outFile, 'w');
      cleanups.push(async () => {
        runc(root, 'delete', '--force', id);
        await handle.close();
      });
      const work = join(dir, `work-${id}`);
      await mkdir(work);
      await restoreProcesses({ criuPath: await criuPath(), runtimeRoot: root, containerId: id, bundleDir, imageDir: image, workDir: work, outputFd: handle.fd, emptyNetwork: kind === 'userns' });
      await waitFor(async () => (await values(outFile)).length >= 3, `restored copy ${n} to print`);
      const counted = await values(outFile);
      // It continues from the captured count (not from 1), one by one.
      assert.ok(counted[0]! > before && counted[0]! <= afterDump + 1, `copy ${n} starts at ${counted[0]}, dump was between ${before} and ${afterDump}`);
      counted.forEach((v, i) => assert.equal(v, counted[0]! + i));
      const state = JSON.parse(runc(root, 'state', id)) as { pid: number; status: string };
      assert.equal(state.status, 'running');
      // Its own cgroup, not the original's; the same credentials, capabilities, no-new-privileges and seccomp mode.
      assert.match(await readFile(`/proc/${state.pid}/cgroup`, 'utf8'), new RegExp(`/corral-criu-test/${id}`));
      assert.deepEqual(await statusLines(state.pid), await statusLines(originalPid));
      if (kind === 'host-netns') assert.equal(await readlink(`/proc/${state.pid}/ns/net`), `net:[${statSync(restoredNamespaces[0]!.path!).ino}]`);
      pids.push(state.pid);
    }
    return { root, pids, originalPid };
  }

  it('without a user namespace: restores into new containers, each in its own new network namespace', async () => {
    await forkTwice('host-netns');
  });

  it("from Corral's user/network namespace pair: restores into new user and network namespaces of the same shape, which the host can plumb", async () => {
    const { pids, originalPid } = await forkTwice('userns');
    const ns = (pid: number, type: string): string => execFileSync('readlink', [`/proc/${pid}/ns/${type}`], { encoding: 'utf8' }).trim();
    const seen = new Set<string>([ns(originalPid, 'user'), ns(originalPid, 'net')]);
    for (const pid of pids) {
      // The dumped mapping, in a user namespace of its own.
      assert.equal((await readFile(`/proc/${pid}/uid_map`, 'utf8')).trim().split(/\s+/).join(' '), `0 ${MAPPING.hostUid} ${MAPPING.size}`);
      assert.equal((await readFile(`/proc/${pid}/gid_map`, 'utf8')).trim().split(/\s+/).join(' '), `0 ${MAPPING.hostGid} ${MAPPING.size}`);
      for (const type of ['user', 'net']) {
        assert.ok(!seen.has(ns(pid, type)), `restored ${type} namespace is shared`);
        seen.add(ns(pid, type));
      }
      // Its network namespace belongs to its user namespace, as in Corral's pair.
      const owners = namespacesOf(pid);
      const userNs = /user\s+(\d+)/.exec(owners)?.[1];
      assert.match(owners, new RegExp(`net\\s+\\d+\\s+${userNs}`));
      // Empty (only lo), and the host can move a veth end into it.
      const veth = `crv${tag.slice(0, 4)}${pids.indexOf(pid)}`;
      execFileSync('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`]);
      try {
        execFileSync('ip', ['link', 'set', `${veth}p`, 'netns', String(pid)]);
        const links = execFileSync('nsenter', ['-t', String(pid), '-n', 'ip', '-o', 'link'], { encoding: 'utf8' });
        assert.deepEqual(links.split('\n').filter(Boolean).map((l) => l.split(':')[1]!.trim().split('@')[0]), ['lo', `${veth}p`]);
      } finally {
        execFileSync('ip', ['link', 'del', veth]);
      }
    }
  });
});

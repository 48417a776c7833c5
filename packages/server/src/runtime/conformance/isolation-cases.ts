import assert from 'node:assert/strict';
import { it } from 'node:test';
import { runToEnd } from './conformance-suite.js';
import type { ConformanceContext } from './conformance-suite.js';

/** One line of `/proc/self/mountinfo`: where it is mounted and its per-mount and superblock options. */
interface MountLine {
  mountPoint: string;
  mountOptions: string[];
  superOptions: string[];
}

/** Parses `/proc/self/mountinfo` text (octal escapes in paths are decoded). */
export function parseMountinfo(text: string): MountLine[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: MountLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const [left, right] = line.split(' - ');
    const fields = (left ?? '').split(' ');
    const superFields = (right ?? '').split(' ');
    out.push({
      mountPoint: unescape(fields[4] ?? ''),
      mountOptions: (fields[5] ?? '').split(','),
      superOptions: (superFields[2] ?? '').split(','),
    });
  }
  return out;
}

/** The mount that is visible at `path` (the last one mounted there), if `path` is a mount point. */
function mountAt(mounts: MountLine[], path: string): MountLine | undefined {
  return mounts.filter((m) => m.mountPoint === path).at(-1);
}

/**
 * Isolation cases: sandboxes have a cgroup namespace, the driver's isolation report matches what a
 * sandbox sees, the /etc files the driver provides cannot be used to write outside the sandbox's
 * own disk, and the root filesystem is mounted nosuid,nodev.
 */
export function registerIsolationCases(context: ConformanceContext): void {
  it('isolation: sandboxes have a cgroup namespace (every /proc/self/cgroup path is the root)', async (t) => {
    const gap = context.gap('cgroupNamespace');
    // The next case checks that the report says what a sandbox sees, so a gap cannot hide one.
    if (gap && !context.runtime.isolation().cgroupNamespace) return t.skip(gap);
    const { stdout, exitCode } = await runToEnd(context.runtime, context.shared, 'cat /proc/self/cgroup');
    assert.equal(exitCode, 0);
    const lines = stdout.trim().split('\n');
    assert.ok(lines.length > 0);
    for (const line of lines) assert.match(line, /^\d+:[^:]*:\/$/, `a sandbox sees a host cgroup path: ${stdout}`);
    assert.equal(context.runtime.isolation().cgroupNamespace, true);
  });

  it('isolation: the report says what a sandbox sees (user namespace, seccomp, cgroup version)', async () => {
    const report = context.runtime.isolation();
    const { stdout, exitCode } = await runToEnd(context.runtime, context.shared, 'cat /proc/self/uid_map; echo ---; grep ^Seccomp: /proc/self/status; echo ---; cat /proc/self/cgroup');
    assert.equal(exitCode, 0);
    const [uidMap = '', seccomp = '', cgroup = ''] = stdout.split('---\n');
    const hostRoot = uidMap.trim().split(/\s+/).join(' ') === '0 0 4294967295';
    assert.equal(report.userNamespace, !hostRoot, `uid_map ${uidMap.trim()}, report ${JSON.stringify(report)}`);
    if (!report.userNamespace) assert.ok(report.reason, 'a report without a user namespace says why');
    assert.equal(report.seccomp, /Seccomp:\s+2/.test(seccomp), seccomp);
    const unifiedOnly = cgroup.trim().split('\n').every((l) => l.startsWith('0::'));
    assert.equal(report.cgroupVersion, unifiedOnly ? 2 : 1, cgroup);
  });

  it('isolation: /etc/hosts, /etc/resolv.conf and /etc/hostname cannot write to the host outside the sandbox disk', async () => {
    const { runtime, shared } = context;
    const mounts = parseMountinfo((await runToEnd(runtime, shared, 'cat /proc/self/mountinfo')).stdout);
    for (const file of ['/etc/hosts', '/etc/resolv.conf', '/etc/hostname']) {
      const content = await runToEnd(runtime, shared, `cat ${file}`);
      assert.equal(content.exitCode, 0, `${file} exists: ${content.stderr}`);
      const mount = mountAt(mounts, file);
      if (mount === undefined) continue; // Part of the root filesystem: writes land on the sandbox's writable layer.
      // A file bind-mounted from the host must be read-only, and writing to it must fail.
      assert.ok(mount.mountOptions.includes('ro'), `${file} is a writable mount of a host file (${mount.mountOptions.join(',')})`);
      const write = await runToEnd(runtime, shared, `echo 127.0.0.9 x >> ${file}`);
      assert.notEqual(write.exitCode, 0, `writing to ${file} succeeded`);
    }
    // Whatever the layout, the files resolve names as before.
    assert.equal((await runToEnd(runtime, shared, 'grep -c localhost /etc/hosts')).exitCode, 0);
    assert.match((await runToEnd(runtime, shared, 'cat /etc/hostname')).stdout, /^sandbox-/);
  });

  it('isolation: the root filesystem is mounted nosuid,nodev', async (t) => {
    if (context.runtime.name === 'docker') {
      t.skip('Docker Engine mounts the container root itself; its API has no nosuid/nodev for it (no-new-privileges and dropped MKNOD stand in)');
      return;
    }
    const gap = context.gap('rootNosuid');
    if (gap) return t.skip(gap);
    const mounts = parseMountinfo((await runToEnd(context.runtime, context.shared, 'cat /proc/self/mountinfo')).stdout);
    const root = mountAt(mounts, '/');
    assert.ok(root, 'mountinfo has a line for /');
    assert.ok(root.mountOptions.includes('nosuid'), `/ is mounted ${root.mountOptions.join(',')}`);
    assert.ok(root.mountOptions.includes('nodev'), `/ is mounted ${root.mountOptions.join(',')}`);
  });
}

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { makeBuildCgroups } from './build-cgroup.js';
import { BuildNamespace } from './build-namespace.js';
import { DEFAULT_BUILD_USERNS, killCgroupTree } from './oci-image-builder.js';

const ids = DEFAULT_BUILD_USERNS;

describe('BuildNamespace', { skip: process.getuid?.() !== 0 ? 'needs root (user namespaces with a range of ids, mounts, cgroups)' : false }, () => {
  // Under /var/tmp, searchable: the namespace's root must reach it.
  const dir = mkdtempSync('/var/tmp/corral-build-ns-test-');
  chmodSync(dir, 0o711);
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs tools as its root, an unprivileged host id, and is gone once closed', async () => {
    const ns = await BuildNamespace.open(ids);
    const pid = ns.pid;
    try {
      assert.equal((await ns.run(['id', '-u'])).trim(), '0');
      assert.deepEqual((await ns.run(['cat', '/proc/self/uid_map'])).trim().split(/\s+/), ['0', String(ids.hostId), String(ids.size)]);
      const owned = join(dir, 'owned');
      mkdirSync(owned);
      chownSync(owned, ids.hostId, ids.hostId);
      await ns.run(['touch', join(owned, 'made')]);
      assert.equal(statSync(join(owned, 'made')).uid, ids.hostId, "what its root makes is the build's host id's");
      await assert.rejects(ns.run(['touch', join(dir, 'not-its-own')]), 'it cannot write a directory of host root');
      assert.deepEqual((await ns.run(['sh', '-c', "tail -n +3 /proc/net/dev | cut -d: -f1"])).trim().split(/\s+/), ['lo'], 'a network namespace of its own');
    } finally {
      await ns.close();
    }
    assert.equal(existsSync(`/proc/${pid}`), false);
  });

  it("shows, under /sys, only its own network and the build's cgroups with their limits (test first: buildah hands this /sys to RUN steps)", async () => {
    const name = `corral-build-nstest-${randomBytes(4).toString('hex')}`;
    const stage = join(dir, 'stage');
    mkdirSync(stage);
    chownSync(stage, ids.hostId, ids.hostId);
    const ns = await BuildNamespace.open(ids);
    try {
      const cgroups = await makeBuildCgroups(name, ids.hostId, { memoryBytes: 300 * 1024 ** 2, cpuCores: 1, pidsLimit: 100 });
      assert.equal(cgroups.parent, '/steps');
      // Before: the host's cgroup tree, with every sandbox's cgroup, is what the namespace sees.
      assert.match(await ns.run(['sh', '-c', 'ls /sys/fs/cgroup/memory /sys/fs/cgroup 2>/dev/null']), new RegExp(name));
      await ns.isolateSysfs(cgroups.binds, stage);
      const seen = await ns.run(['sh', '-c', 'ls /sys/fs/cgroup/* /sys/fs/cgroup 2>/dev/null']);
      assert.doesNotMatch(seen, /corral|docker|kubepods/, 'no cgroup but the build\'s own');
      assert.match(seen, /\bsteps\b/);
      const limit = (await ns.run(['sh', '-c', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'])).trim();
      assert.equal(limit, String(300 * 1024 ** 2));
      assert.deepEqual((await ns.run(['ls', '/sys/class/net'])).trim().split(/\s+/), ['lo']);
      await assert.rejects(ns.run(['sh', '-c', 'echo 999999999999 > /sys/fs/cgroup/memory/steps/memory.limit_in_bytes 2>/dev/null || echo max > /sys/fs/cgroup/steps/memory.max']), 'the limits are host root\'s');
      await ns.run(['sh', '-c', 'echo $$ > /sys/fs/cgroup/memory/steps/cgroup.procs 2>/dev/null || echo $$ > /sys/fs/cgroup/steps/cgroup.procs']);
    } finally {
      await ns.close();
      await killCgroupTree(name);
    }
  });
});

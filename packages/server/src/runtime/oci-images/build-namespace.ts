import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, readlink, writeFile } from 'node:fs/promises';
import { runTool } from '../run-tool.js';

/** A user namespace mapping: id `n` inside is host id `hostId + n`, for `size` ids. */
export interface BuildIdMap {
  hostId: number;
  size: number;
}

/** How long {@link BuildNamespace.open} waits for the holder process to be in its namespaces. */
const OPEN_TIMEOUT_MS = 10_000;

/**
 * A user namespace (ids mapped as {@link BuildIdMap} says) with a mount and a network namespace
 * of its own, in which a build's tools run as root of that namespace: buildah, skopeo and every
 * `RUN` step see one id space, so the layers buildah commits hold the ids the build saw (and
 * `--layers` works), and host root never runs build code. The namespaces are held by a `sleep`
 * process (`unshare --user --mount --net`) that the kernel kills when this server dies
 * (`setpriv --pdeathsig KILL`); tools join them with `nsenter`. Mounts made inside (buildah's
 * overlays, {@link isolateSysfs}) stay inside and go with the namespace.
 */
export class BuildNamespace {
  private constructor(
    private readonly holder: ChildProcess,
    /** Process id of the holder: `/proc/<pid>/ns/{user,mnt,net}` are the namespaces. */
    readonly pid: number,
  ) {}

  /** Starts the holder, waits until it is in its new namespaces, and writes their id maps. */
  static async open(ids: BuildIdMap): Promise<BuildNamespace> {
    const holder = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'unshare', '--user', '--mount', '--net', '--propagation', 'private', '--', 'sleep', 'infinity'], {
      stdio: 'ignore',
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    const pid = holder.pid;
    if (pid === undefined) throw new Error('could not start the build namespace (setpriv or unshare missing?)');
    const namespace = new BuildNamespace(holder, pid);
    try {
      const own = await readlink('/proc/self/ns/user');
      const deadline = Date.now() + OPEN_TIMEOUT_MS;
      // `sleep` runs once unshare(2) has made the namespaces and set propagation.
      for (;;) {
        const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
        const userNs = await readlink(`/proc/${pid}/ns/user`).catch(() => own);
        if (comm.trim() === 'sleep' && userNs !== own) break;
        if (holder.exitCode !== null || holder.signalCode !== null) throw new Error(`the build namespace's holder exited (${holder.exitCode ?? holder.signalCode})`);
        if (Date.now() > deadline) throw new Error('the build namespace was not ready in time');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const map = `0 ${ids.hostId} ${ids.size}\n`;
      await writeFile(`/proc/${pid}/uid_map`, map);
      await writeFile(`/proc/${pid}/gid_map`, map);
      return namespace;
    } catch (error) {
      await namespace.close();
      throw error;
    }
  }

  /**
   * The command that runs `argv` in the namespaces as `uid`/`gid` of the namespace (default root),
   * with no supplementary groups.
   */
  command(argv: string[], ids: { uid?: number; gid?: number } = {}): { file: string; args: string[] } {
    const uid = ids.uid ?? 0;
    const gid = ids.gid ?? uid;
    return { file: 'nsenter', args: ['--target', String(this.pid), '--user', '--mount', '--net', '--setuid', String(uid), '--setgid', String(gid), '--', ...argv] };
  }

  /** Runs `argv` to completion in the namespaces as their root; its standard output. */
  async run(argv: string[], timeoutMs = 600_000): Promise<string> {
    const { file, args } = this.command(argv);
    return (await runTool(file, args, { timeoutMs })).stdout;
  }

  /**
   * Gives the namespace a `/sys` of its own, so that buildah (which counts as rootless in a
   * namespace that maps fewer than all ids, and then hands `RUN` steps a bind of its `/sys`) shows a
   * build nothing of the host: a fresh read-only sysfs of the namespace's network namespace (only
   * `lo`), a tmpfs over `/sys/fs/cgroup`, and in it only the build's own cgroups, each `source`
   * bound at `/sys/fs/cgroup/<target>` (`''`: at `/sys/fs/cgroup` itself, cgroup v2). `stage` is an
   * empty directory the namespace's root may write, used while the host's cgroup tree is still there.
   */
  async isolateSysfs(cgroups: { source: string; target: string }[], stage: string): Promise<void> {
    const quote = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;
    const lines = ['set -eu'];
    cgroups.forEach(({ source }, i) => lines.push(`mkdir -p ${quote(`${stage}/${i}`)}`, `mount -n --bind ${quote(source)} ${quote(`${stage}/${i}`)}`));
    lines.push('mount -n -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys');
    const unified = cgroups.some(({ target }) => target === '');
    // v1: a directory per hierarchy on a tmpfs, made read-only once they are in place.
    if (!unified) lines.push('mount -n -t tmpfs -o mode=0755,nosuid,nodev,noexec,size=64k tmpfs /sys/fs/cgroup');
    cgroups.forEach(({ target }, i) => {
      const path = target === '' ? '/sys/fs/cgroup' : `/sys/fs/cgroup/${target}`;
      if (target !== '') lines.push(`mkdir -p ${quote(path)}`);
      lines.push(`mount -n --move ${quote(`${stage}/${i}`)} ${quote(path)}`);
    });
    if (!unified) lines.push('mount -n -o remount,ro,bind /sys/fs/cgroup');
    await this.run(['sh', '-c', lines.join('\n')], 60_000);
  }

  /** Kills the holder and waits for it to go; the namespaces go with their last process. */
  async close(): Promise<void> {
    if (this.holder.exitCode !== null || this.holder.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.holder.once('exit', () => resolve()));
    this.holder.kill('SIGKILL');
    await exited;
  }
}

/**
 * The driver conformance suite against a private dockerd whose data-root is a loop-mounted btrfs
 * (storage driver `btrfs`), where the driver runs in `storage-opt` mode; plus checks that
 * `diskBytes` then bounds every write in the sandbox, not only the workspace.
 *
 * The test starts and stops its own dockerd (own socket, exec-root, data-root, its own default
 * bridge `cbt-<id>` on 10.199.255.0/24, `--iptables=false`, so it never touches the host's main
 * engine, its bridge or its firewall chains) on a
 * sparse btrfs image under `$CORRAL_CACHE_DIR`. It needs root, `mkfs.btrfs` (btrfs-progs), btrfs in
 * the kernel, loop devices and `dockerd`; without them it skips with the reason, except under
 * `CI=true` where it fails.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { runConformanceSuite, runToEnd } from '../conformance/conformance-suite.js';
import type { SandboxSpec } from '../runtime.js';
import { DockerRuntime } from './docker-runtime.js';
import { LOCAL_TEST_REGISTRIES } from '../../testing/local-registries.js';
import type { DockerRuntimeOptions } from './docker-runtime.js';

const run = promisify(execFile);
const IMAGE = process.env.CORRAL_TEST_IMAGE ?? 'corral-test/busybox:latest';
const REPO = new URL('../../../../../', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const MiB = 1024 * 1024;
/** Size of the sparse btrfs image (only what is written takes host disk). */
const FS_BYTES = 4 * 1024 * MiB;

/** Why btrfs-backed dockerd cannot run here, or undefined when it can. */
function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (loop mounts and dockerd need root)';
  if (!readFileSync('/proc/filesystems', 'utf8').includes('btrfs')) return 'the kernel has no btrfs';
  for (const [binary, args, pkg] of [
    ['mkfs.btrfs', ['--version'], 'btrfs-progs'],
    ['btrfs', ['--version'], 'btrfs-progs'],
    ['dockerd', ['--version'], 'docker.io'],
    ['docker', ['--version'], 'docker.io'],
  ] as const) {
    try {
      execFileSync(binary, [...args], { stdio: 'ignore' });
    } catch {
      return `${binary} not found (install ${pkg}; scripts/ensure-docker.sh does when it starts dockerd)`;
    }
  }
  if (!existsSync('/dev/loop-control')) return '/dev/loop-control missing (no loop devices)';
  return undefined;
}

/** A private dockerd on a btrfs loop filesystem. */
interface BtrfsEngine {
  socketPath: string;
  docker: Docker;
  stop(): Promise<void>;
}

async function startEngine(): Promise<BtrfsEngine> {
  mkdirSync(CACHE, { recursive: true });
  const dir = mkdtempSync(join(CACHE, 'btrfs-dockerd-'));
  const imageFile = join(dir, 'docker.btrfs');
  const dataRoot = join(dir, 'data');
  // Short: containerd's socket lives under the exec-root and unix socket paths are limited to 108 bytes.
  const execRoot = `/run/cbt-${randomBytes(4).toString('hex')}`;
  const socketPath = `${execRoot}.sock`;
  mkdirSync(dataRoot);
  execFileSync('truncate', ['-s', String(FS_BYTES), imageFile]);
  execFileSync('mkfs.btrfs', ['-q', '-f', imageFile], { stdio: 'ignore' });
  execFileSync('mount', ['-o', 'loop,discard=async', imageFile, dataRoot]);
  execFileSync('btrfs', ['quota', 'enable', dataRoot]);
  const logFd = openSync(join(dir, 'dockerd.log'), 'a');
  // Its own default bridge: with `--bridge none` dockerd deletes the host's `docker0` at start,
  // which the main engine (and a kubelet on it) still use.
  const bridge = `cbt-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['link', 'add', bridge, 'type', 'bridge']);
  execFileSync('ip', ['addr', 'add', '10.199.255.1/24', 'dev', bridge]);
  const daemon = spawn(
    'dockerd',
    [
      '-H', `unix://${socketPath}`,
      '--data-root', dataRoot,
      '--exec-root', execRoot,
      '--pidfile', `${execRoot}.pid`,
      '--storage-driver', 'btrfs',
      '--bridge', bridge,
      '--iptables=false',
    ],
    { stdio: ['ignore', logFd, logFd], detached: true },
  );
  const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()));
  const docker = new Docker({ socketPath });

  const stop = async (): Promise<void> => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      const killed = await Promise.race([exited.then(() => true), delay(20_000).then(() => false)]);
      if (!killed) {
        daemon.kill('SIGKILL');
        await exited;
      }
    }
    for (let i = 0; i < 20; i++) {
      try {
        execFileSync('umount', [dataRoot], { stdio: 'ignore' });
        break;
      } catch {
        if (!isMounted(dataRoot)) break;
        await delay(250);
      }
    }
    if (isMounted(dataRoot)) execFileSync('umount', ['-l', dataRoot], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
    rmSync(execRoot, { recursive: true, force: true });
    rmSync(socketPath, { force: true });
    try {
      execFileSync('ip', ['link', 'delete', bridge], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  };

  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await docker.ping();
        break;
      } catch (error) {
        if (daemon.exitCode !== null || Date.now() > deadline) {
          throw new Error(`dockerd on btrfs did not answer: ${String(error)}\n${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-3000)}`);
        }
        await delay(100);
      }
    }
    const info = (await docker.info()) as { Driver?: string };
    assert.equal(info.Driver, 'btrfs');
    // The same offline image the other Docker tests use, built by the same script (the engine answers, so it only imports).
    await run('bash', [join(REPO, 'scripts/ensure-docker.sh')], {
      env: { ...process.env, DOCKER_HOST: `unix://${socketPath}`, CORRAL_CACHE_DIR: CACHE },
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { socketPath, docker, stop };
}

function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[1] === path);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Best-effort removal of an iptables (or ip6tables) jump and chain the egress network of this test installed. */
function dropChain(from: string, chain: string, binary = 'iptables'): void {
  const ipt = (args: string[]): void => {
    try {
      execFileSync(binary, ['-w', '5', ...args], { stdio: 'ignore' });
    } catch {
      // Absent already.
    }
  };
  ipt(['-D', from, '-j', chain]);
  ipt(['-F', chain]);
  ipt(['-X', chain]);
}

const reason = missing();
if (reason !== undefined) {
  test('docker runtime conformance on btrfs (storage-opt)', (t) => {
    if (process.env.CI === 'true') throw new Error(reason);
    t.skip(reason);
  });
} else {
  const engine = await startEngine();
  const tag = randomBytes(3).toString('hex');
  // Own network, bridge and firewall chains: the host's main engine keeps its own untouched.
  const egress: DockerRuntimeOptions['egress'] = {
    name: `corral-egress-bt${tag}`,
    bridgeName: `cbt${tag}0`,
    inputChain: `CORRAL-BT${tag}-IN`,
    forwardChain: `CORRAL-BT${tag}-FWD`,
  };
  const makeRuntime = (): DockerRuntime =>
    new DockerRuntime({
      instance: `test-bt-${randomBytes(4).toString('hex')}`,
      docker: engine.docker,
      diskDir: join(CACHE, 'docker-disks', 'unused'),
      egress,
      warn: () => undefined,
      insecureRegistries: [...LOCAL_TEST_REGISTRIES],
    });

  after(async () => {
    await engine.docker.getNetwork(egress.name ?? '').remove().catch(() => undefined);
    dropChain('INPUT', egress.inputChain ?? '');
    dropChain('DOCKER-USER', egress.forwardChain ?? '');
    dropChain('INPUT', egress.inputChain ?? '', 'ip6tables');
    dropChain('FORWARD', egress.forwardChain ?? '', 'ip6tables');
    await engine.stop();
  });

  runConformanceSuite('docker (btrfs, storage-opt)', async () => {
    const runtime = makeRuntime();
    return {
      runtime,
      image: IMAGE,
      async cleanup() {
        for (const s of await runtime.list()) await runtime.remove(s.runtimeId);
        await runtime.close();
      },
    };
  });

  describe('docker on btrfs: diskBytes bounds the whole writable layer', { concurrency: 1 }, () => {
    const runtime = makeRuntime();
    let runtimeId = '';
    const diskBytes = 64 * MiB;

    before(async () => {
      await runtime.init();
      const spec: SandboxSpec = {
        sandboxId: `bt${randomBytes(6).toString('hex')}`,
        image: IMAGE,
        startCommand: null,
        env: {},
        cpuCores: 1,
        memoryBytes: 256 * MiB,
        diskBytes,
        pidsLimit: 256,
        networkAccess: false,
        gpuCount: 0,
        gpuType: null,
        workspacePath: '/sandbox-workspace',
      };
      ({ runtimeId } = await runtime.create(spec));
    });

    after(async () => {
      if (runtimeId) await runtime.remove(runtimeId).catch(() => undefined);
      await runtime.close();
    });

    it('the driver reports storage-opt mode, container scope, and passes diskBytes + image size', async () => {
      assert.equal(runtime.engineStorageDriver, 'btrfs');
      assert.equal(runtime.diskMode, 'storage-opt');
      assert.equal(runtime.diskScope, 'container');
      const info = await engine.docker.getContainer(runtimeId).inspect();
      const imageSize = (await engine.docker.getImage(IMAGE).inspect()).Size;
      assert.equal(info.HostConfig.StorageOpt?.size, String(diskBytes + imageSize));
      // Only the read-only /etc/hosts, /etc/resolv.conf and /etc/hostname files are bound, no loop disk.
      const mounts = (info.HostConfig.Mounts ?? []).map((m) => ({ target: m.Target, readOnly: m.ReadOnly === true }));
      assert.deepEqual(mounts, ['/etc/hosts', '/etc/resolv.conf', '/etc/hostname'].map((target) => ({ target, readOnly: true })), 'no loop disk is bound in storage-opt mode');
    });

    for (const path of ['/tmp/big', '/big', '/usr/lib-big', '/sandbox-workspace/big']) {
      it(`writing past diskBytes to ${path} fails with EDQUOT, and space comes back after rm`, async () => {
        const r = await runToEnd(runtime, runtimeId, `dd if=/dev/zero of=${path} bs=1M count=100; echo rc=$?; wc -c < ${path}; rm -f ${path}`);
        const [rc, written] = r.stdout.trim().split('\n');
        assert.match(rc ?? '', /rc=[1-9]/, r.stdout + r.stderr);
        assert.match(r.stderr, /Disk quota exceeded/, r.stderr);
        // The sandbox gets diskBytes of its own (the limit adds the image's size); btrfs metadata takes a little.
        assert.ok(Number(written) <= diskBytes + MiB, `wrote ${written} bytes`);
        assert.ok(Number(written) >= diskBytes - 8 * MiB, `wrote only ${written} bytes`);
        const small = await runToEnd(runtime, runtimeId, `dd if=/dev/zero of=${path} bs=1M count=8 2>/dev/null && rm ${path} && echo ok`);
        assert.equal(small.stdout, 'ok\n', small.stderr);
      });
    }

    it('writes in different directories share one limit', async () => {
      const r = await runToEnd(
        runtime,
        runtimeId,
        'dd if=/dev/zero of=/tmp/a bs=1M count=40 2>/dev/null; echo a=$?; dd if=/dev/zero of=/sandbox-workspace/b bs=1M count=40 2>/dev/null; echo b=$?; rm -f /tmp/a /sandbox-workspace/b',
      );
      assert.equal(r.stdout, 'a=0\nb=1\n', r.stderr);
    });
  });
}

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RuntimeError } from '../runtime.js';
import type { ExecRequest, RuntimeExitEvent, SandboxRuntime, SandboxSpec } from '../runtime.js';
import { specFixture } from '../../testing/sandbox-fixture.js';
import { registerNetworkIsolationCases } from './network-isolation-cases.js';
import { registerIsolationCases } from './isolation-cases.js';
import { registerDiskCases } from './disk-cases.js';
import { registerRegistryCases } from './registry-cases.js';
import { registerExecUserCases } from './exec-user-cases.js';
import { registerRemovalCases, type RemovalFaults } from './removal-cases.js';
import { registerFifoEtcCases } from './fifo-etc-cases.js';
import { registerEgressCases } from './egress-cases.js';
import { registerDialCases } from './dial-cases.js';
import { registerPauseCases } from './pause-cases.js';
import { registerCheckpointCases, registerMemoryCheckpointCases } from './checkpoint-cases.js';
import type { TestInternet } from '../../testing/test-internet.js';

/** Properties a driver may be unable to give on its platform ({@link ConformanceTarget.gaps}). */
export type ConformanceGap =
  /** Sandboxes see their own cgroup as the root. */
  | 'cgroupNamespace'
  /** The root filesystem is mounted nosuid,nodev. */
  | 'rootNosuid'
  /** A per-sandbox pids limit. */
  | 'pidsLimit'
  /** Writes past the sandbox's disk size fail (rather than the sandbox being evicted later). */
  | 'diskWriteLimit'
  /** Execs in a sandbox without network access cannot be blocked by a FIFO /etc/passwd. */
  | 'execUserFifoWithoutNetwork'
  /**
   * The platform's network enforces the driver's isolation of networked sandboxes from each other
   * and from the host (a driver that hands it to the cluster as NetworkPolicies, on a cluster
   * whose network plugin ignores them).
   */
  | 'networkPolicyEnforcement';

/** What a driver's conformance test provides: a fresh runtime (own instance), an image, a cleanup. */
export interface ConformanceTarget {
  runtime: SandboxRuntime;
  /** A small image with a POSIX shell and busybox-style tools (`nc`, `stty`, `timeout`). */
  image: string;
  /** Removes whatever the runtime still owns and closes it. */
  cleanup(): Promise<void>;
  /** How to make this driver's removals fail (removal-cases.ts); without it those cases skip. */
  removalFaults?: RemovalFaults;
  /**
   * What this driver's platform cannot provide, each with the reason a case that needs it skips.
   * Only for limits of the platform (the engine, the cluster version), stated where the driver
   * documents them; a case that merely fails is not a gap.
   */
  gaps?: Partial<Record<ConformanceGap, string>>;
  /** The test internet the runtime's egress resolver forwards to (egress-cases.ts); without it those cases skip. */
  testInternet?: TestInternet;
}

const MiB = 1024 * 1024;

/** The output of a finished exec. */
interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs a process to completion and collects its output. */
export async function runToEnd(runtime: SandboxRuntime, runtimeId: string, request: ExecRequest | string): Promise<RunResult> {
  const req: ExecRequest = typeof request === 'string' ? { argv: ['/bin/sh', '-c', request] } : request;
  const proc = await runtime.exec(runtimeId, req);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout.on('data', (c: Buffer) => out.push(c));
  proc.stderr.on('data', (c: Buffer) => err.push(c));
  proc.stdin?.end();
  const { exitCode } = await proc.wait();
  return { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), exitCode };
}

/** Rejects when `promise` takes longer than `ms`. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function sandboxId(): string {
  return `cf${randomBytes(6).toString('hex')}`;
}

/** A spec for a small test sandbox of `image` (256 MiB, 1 GiB disk, 256 pids), with `overrides`. */
export function makeSpec(image: string, overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return specFixture({ sandboxId: sandboxId(), image, memoryBytes: 256 * MiB, diskBytes: 1024 * MiB, pidsLimit: 256, ...overrides });
}

/** Resolves with the first exit event matching `predicate`, or rejects after `timeoutMs`. */
export function nextEvent(runtime: SandboxRuntime, predicate: (e: RuntimeExitEvent) => boolean, timeoutMs: number): Promise<RuntimeExitEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no matching runtime event within ${timeoutMs} ms`));
    }, timeoutMs);
    const unsubscribe = runtime.onEvent((event) => {
      if (event.type !== 'exited' || !predicate(event)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(event);
    });
  });
}

/** A deterministic pseudo-random stream of `total` bytes, produced chunk by chunk. */
function generatedStream(total: number, seed: number): Readable {
  let produced = 0;
  let state = seed >>> 0;
  return new Readable({
    read() {
      if (produced >= total) {
        this.push(null);
        return;
      }
      const size = Math.min(256 * 1024, total - produced);
      const chunk = Buffer.allocUnsafe(size);
      for (let i = 0; i < size; i += 4) {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        chunk.writeUInt32LE(state, i);
      }
      produced += size;
      this.push(chunk);
    },
  });
}

async function hashStream(stream: Readable): Promise<{ hash: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { hash: hash.digest('hex'), bytes };
}

function hostIPv4Addresses(): string[] {
  const out: string[] = [];
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) out.push(a.address);
  }
  return out;
}

/** Parses the default gateway out of /proc/net/route text. */
function defaultGateway(routeTable: string): string | undefined {
  for (const line of routeTable.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === '00000000' && fields[2]) {
      const hex = fields[2];
      const bytes = [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16));
      return bytes.join('.');
    }
  }
  return undefined;
}

/**
 * What a module of further conformance cases sees: the suite's runtime, image and shared sandbox,
 * valid inside its tests (they are set in the suite's `before`).
 */
export interface ConformanceContext {
  readonly runtime: SandboxRuntime;
  readonly image: string;
  /** A long-lived sandbox (the suite's default spec) for tests that only run processes and files in it. */
  readonly shared: string;
  /** The driver test's ways to make a removal fail, if it has any. */
  readonly removalFaults: RemovalFaults | undefined;
  /** The target's test internet, if it has one. */
  readonly testInternet: TestInternet | undefined;
  /** Why the driver cannot give `gap` on its platform, or undefined when it must. */
  gap(gap: ConformanceGap): string | undefined;
}

/**
 * Registers the driver-level conformance tests every `SandboxRuntime` must pass. `makeRuntime`
 * is called twice (the second runtime is a separate instance, to check `list()` isolation).
 */
export function runConformanceSuite(name: string, makeRuntime: () => Promise<ConformanceTarget>): void {
  // A hung test fails the suite with its name instead of stalling CI.
  describe(`${name} runtime conformance`, { concurrency: 6, timeout: 240_000 }, () => {
    let target: ConformanceTarget;
    let rt: SandboxRuntime;
    let image: string;
    /** A long-lived sandbox shared by tests that only run processes and files in it. */
    let shared: string;
    const sharedEnv = { SPEC_VAR: 'from spec', QUOTED: `it's "quoted"` };

    before(async () => {
      target = await makeRuntime();
      rt = target.runtime;
      image = target.image;
      await rt.init();
      ({ runtimeId: shared } = await rt.create(makeSpec(image, { env: sharedEnv })));
    });

    after(async () => {
      if (shared) await rt.remove(shared).catch(() => undefined);
      await target?.cleanup();
    });

    const context: ConformanceContext = {
      get runtime() {
        return rt;
      },
      get image() {
        return image;
      },
      get shared() {
        return shared;
      },
      get removalFaults() {
        return target.removalFaults;
      },
      get testInternet() {
        return target.testInternet;
      },
      gap(gap) {
        return target.gaps?.[gap];
      },
    };
    // Modules of further cases register here, one line each: registerXCases(context);
    registerNetworkIsolationCases(context);
    registerIsolationCases(context);
    registerDiskCases(context);
    registerRegistryCases(context);
    registerExecUserCases(context);
    registerRemovalCases(context);
    registerFifoEtcCases(context);
    registerEgressCases(context);
    registerDialCases(context);
    registerPauseCases(context);
    registerCheckpointCases(context);
    registerMemoryCheckpointCases(context);

    it('lifecycle: create, exec, inspect, remove, list', async (t) => {
      const spec = makeSpec(image);
      const started = performance.now();
      const { runtimeId } = await rt.create(spec);
      const created = performance.now();
      const first = await runToEnd(rt, runtimeId, 'echo ok');
      const firstExec = performance.now();
      assert.deepEqual(first, { stdout: 'ok\n', stderr: '', exitCode: 0 });
      const rounds: number[] = [];
      for (let i = 0; i < 5; i++) {
        const s = performance.now();
        await runToEnd(rt, runtimeId, { argv: ['true'] });
        rounds.push(performance.now() - s);
      }
      rounds.sort((a, b) => a - b);
      t.diagnostic(
        `create ${(created - started).toFixed(0)} ms, create→first exec done ${(firstExec - started).toFixed(0)} ms, ` +
          `exec round trip median ${rounds[2]?.toFixed(0)} ms`,
      );
      const state = await rt.inspect(runtimeId);
      assert.equal(state?.running, true);
      assert.equal(state?.sandboxId, spec.sandboxId);
      assert.equal(state?.exitCode, null);
      assert.ok((await rt.list()).some((s) => s.runtimeId === runtimeId));
      await rt.remove(runtimeId);
      assert.equal(await rt.inspect(runtimeId), undefined);
      assert.ok(!(await rt.list()).some((s) => s.runtimeId === runtimeId));
      await rt.remove(runtimeId); // idempotent
      await assert.rejects(rt.exec(runtimeId, { argv: ['true'] }), (e: unknown) => e instanceof RuntimeError && e.kind === 'NOT_FOUND');
    });

    it('exec: stdout and stderr are separate, exit codes are reported', async () => {
      const r = await runToEnd(rt, shared, 'echo out; echo err >&2; exit 3');
      assert.deepEqual(r, { stdout: 'out\n', stderr: 'err\n', exitCode: 3 });
    });

    it('exec: env, cwd, user, spec env', async () => {
      const r = await runToEnd(rt, shared, {
        argv: ['/bin/sh', '-c', 'echo "$FOO|$SPEC_VAR|$QUOTED"; pwd; id -u'],
        env: { FOO: 'a b=c' },
        cwd: '/tmp',
      });
      assert.equal(r.stdout, `a b=c|from spec|it's "quoted"\n/tmp\n0\n`);
      const nobody = await runToEnd(rt, shared, { argv: ['/bin/sh', '-c', 'id -u; id -g'], user: '65534:65534' });
      assert.equal(nobody.stdout, '65534\n65534\n');
      const named = await runToEnd(rt, shared, { argv: ['id', '-u'], user: 'nobody' });
      assert.equal(named.stdout, '65534\n');
    });

    it('exec: stdin is streamed and EOF is delivered', async () => {
      const proc = await rt.exec(shared, { argv: ['/bin/sh', '-c', 'wc -c; echo done'], stdin: true });
      let out = '';
      proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
      proc.stderr.resume();
      assert.ok(proc.stdin);
      proc.stdin.write('hello ');
      proc.stdin.end('world');
      const { exitCode } = await proc.wait();
      assert.equal(exitCode, 0);
      assert.equal(out.replace(/\s+/g, ' ').trim(), '11 done');
    });

    it('exec: PTY output and resize', async () => {
      const proc = await rt.exec(shared, { argv: ['/bin/sh'], tty: { rows: 24, cols: 80 }, stdin: true });
      let out = '';
      proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
      let err = '';
      proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const waitFor = async (needle: string): Promise<void> => {
        for (let i = 0; i < 200 && !out.includes(needle); i++) await new Promise((r) => setTimeout(r, 25));
        assert.ok(out.includes(needle), `expected ${JSON.stringify(needle)} in ${JSON.stringify(out)}`);
      };
      assert.ok(proc.stdin);
      proc.stdin.write('stty size; tty\n');
      await waitFor('24 80');
      await proc.resize(40, 100);
      proc.stdin.write('stty size\n');
      await waitFor('40 100');
      proc.stdin.write('exit 5\n');
      const { exitCode } = await proc.wait();
      assert.equal(exitCode, 5);
      assert.match(out, /\/dev\/pts\/\d+/);
      assert.match(out, /\r\n/);
      assert.equal(err, '');
    });

    it('exec: 1 MiB of argv, and a 1 MiB shell script', async () => {
      const parts = Array.from({ length: 16 }, (_, i) => String.fromCharCode(97 + i).repeat(64 * 1024));
      const r = await runToEnd(rt, shared, { argv: ['/bin/sh', '-c', 'printf %s "$@" | wc -c', 'argv', ...parts] });
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout.trim(), String(MiB));
      // A single 1 MiB shell script (over the kernel's 128 KiB per-argument limit).
      const script = `x='${'y'.repeat(MiB)}'; printf %s "$x" | wc -c; echo "$0 $1"; exit 4`;
      const big = await runToEnd(rt, shared, { argv: ['/bin/sh', '-c', script, 'zero', 'one'] });
      assert.deepEqual(big, { stdout: `${MiB}\nzero one\n`, stderr: '', exitCode: 4 });
      assert.equal((await runToEnd(rt, shared, 'ls -a /tmp | grep -c corral-script')).stdout.trim(), '0');
    });

    it('exec: kill() kills the whole process tree', async () => {
      const proc = await rt.exec(shared, {
        argv: ['/bin/sh', '-c', 'sleep 1001 & (sleep 1001 & sleep 1001; true) & echo started; wait'],
      });
      let out = '';
      proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
      proc.stderr.resume();
      for (let i = 0; i < 200 && !out.includes('started'); i++) await new Promise((r) => setTimeout(r, 25));
      const count = `n=0; for p in /proc/[0-9]*; do if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^sleep 100[1]'; then n=$((n+1)); fi; done; echo $n`;
      /** The number of sleeps once it is `expected`, or the last one seen after 10 s. */
      const sleepsOnceThere = async (expected: string): Promise<string> => {
        let seen = '';
        for (let i = 0; i < 100 && seen !== expected; i++) {
          if (i > 0) await new Promise((r) => setTimeout(r, 100));
          seen = (await runToEnd(rt, shared, count)).stdout.trim();
        }
        return seen;
      };
      // The subshell forks and executes its two sleeps after "started": on a loaded host that took longer than 100 ms.
      assert.equal(await sleepsOnceThere('3'), '3');
      await proc.kill('SIGTERM');
      const { exitCode } = await proc.wait();
      assert.equal(exitCode, 143);
      assert.equal(await sleepsOnceThere('0'), '0');
    });

    it('exec: kill() right after exec() still reaches the process', async () => {
      const proc = await rt.exec(shared, { argv: ['sleep', '1002'] });
      proc.stdout.resume();
      proc.stderr.resume();
      const started = Date.now();
      await proc.kill('SIGKILL');
      const { exitCode } = await proc.wait();
      assert.equal(exitCode, 137);
      // sleep would end by itself after 1002 s; a loaded docker host took 16 s to deliver the kill.
      assert.ok(Date.now() - started < 300_000, 'the process ended with the signal, not by itself');
    });

    it('exec: 32 concurrent processes', async () => {
      const results = await Promise.all(
        Array.from({ length: 32 }, (_, i) => runToEnd(rt, shared, { argv: ['/bin/sh', '-c', `echo ${i}; echo e${i} >&2; exit ${i % 7}`] })),
      );
      results.forEach((r, i) => assert.deepEqual(r, { stdout: `${i}\n`, stderr: `e${i}\n`, exitCode: i % 7 }));
    });

    it('files: binary round trip, nested directories, missing file', async () => {
      const payload = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(MiB)]);
      const path = '/sandbox-workspace/a/b c/d/file.bin';
      const put = await rt.putFile(shared, path, Readable.from([payload.subarray(0, 1000), payload.subarray(1000)]));
      assert.equal(put.size, payload.length);
      const got = await rt.getFile(shared, path);
      assert.equal(got.size, payload.length);
      const chunks: Buffer[] = [];
      for await (const c of got.stream) chunks.push(c as Buffer);
      assert.ok(Buffer.concat(chunks).equals(payload));
      const empty = await rt.putFile(shared, '/tmp/empty', Readable.from([]));
      assert.equal(empty.size, 0);
      assert.equal((await rt.getFile(shared, '/tmp/empty')).size, 0);
      await assert.rejects(rt.getFile(shared, '/sandbox-workspace/nope/missing'), (e: unknown) => e instanceof RuntimeError && e.kind === 'NOT_FOUND');
      await assert.rejects(rt.getFile(shared, '/sandbox-workspace'), (e: unknown) => e instanceof RuntimeError && e.kind === 'NOT_FOUND');
    });

    it('files: 200 MB stream in and out without buffering', async (t) => {
      const total = 200 * 1000 * 1000;
      const expected = await hashStream(generatedStream(total, 7));
      globalThis.gc?.();
      const baseline = process.memoryUsage().heapUsed;
      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 20);
      try {
        const s = performance.now();
        const put = await rt.putFile(shared, '/tmp/big.bin', generatedStream(total, 7));
        const putMs = performance.now() - s;
        assert.equal(put.size, total);
        const s2 = performance.now();
        const got = await rt.getFile(shared, '/tmp/big.bin');
        assert.equal(got.size, total);
        const back = await hashStream(got.stream);
        const getMs = performance.now() - s2;
        assert.deepEqual(back, expected);
        t.diagnostic(`200 MB put ${putMs.toFixed(0)} ms, get ${getMs.toFixed(0)} ms, heap growth peak ${((peak - baseline) / MiB).toFixed(1)} MiB`);
      } finally {
        clearInterval(sampler);
        await runToEnd(rt, shared, 'rm -f /tmp/big.bin');
      }
      // Other tests run concurrently, so allow for their allocations; a buffered 200 MB file would not fit.
      assert.ok(peak - baseline < 100 * MiB, `heap grew by ${((peak - baseline) / MiB).toFixed(1)} MiB`);
    });

    it('hardening: no new privileges, seccomp, no CAP_SYS_ADMIN/NET_RAW, read-only /proc/sys', async () => {
      const r = await runToEnd(rt, shared, 'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; echo 1 > /proc/sys/kernel/hostname; echo rc=$?');
      const capEff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(r.stdout)?.[1] ?? 'ffffffff'}`);
      assert.equal(capEff & (1n << 21n), 0n, 'CAP_SYS_ADMIN kept');
      assert.equal(capEff & (1n << 13n), 0n, 'CAP_NET_RAW kept');
      assert.equal(capEff & (1n << 12n), 0n, 'CAP_NET_ADMIN kept');
      assert.notEqual(capEff & (1n << 0n), 0n, 'CAP_CHOWN missing');
      assert.match(r.stdout, /NoNewPrivs:\s*1/);
      assert.match(r.stdout, /Seccomp:\s*2/);
      assert.match(r.stdout, /rc=[1-9]/);
      const chown = await runToEnd(rt, shared, 'touch /tmp/owned && chown 65534:65534 /tmp/owned && stat -c %u /tmp/owned');
      assert.equal(chown.stdout.trim(), '65534');
    });

    it('memory limit: OOM kills the sandbox and is reported', async () => {
      const { runtimeId } = await rt.create(makeSpec(image, { memoryBytes: 64 * MiB }));
      try {
        const exited = nextEvent(rt, (e) => e.runtimeId === runtimeId, 30_000);
        exited.catch(() => undefined); // Awaited below; do not leak a rejection if an assertion fails first.
        const r = await runToEnd(rt, runtimeId, 'x=$(head -c 300000000 /dev/zero | tr "\\0" a); echo survived');
        assert.notEqual(r.stdout, 'survived\n');
        const event = await exited;
        assert.equal(event.type, 'exited');
        assert.equal(event.oomKilled, true);
        const state = await rt.inspect(runtimeId);
        assert.equal(state?.running, false);
        assert.equal(state?.oomKilled, true);
      } finally {
        await rt.remove(runtimeId);
      }
    });

    it('cpu limit is visible as a cgroup quota', async () => {
      const { runtimeId } = await rt.create(makeSpec(image, { cpuCores: 0.5 }));
      try {
        const r = await runToEnd(
          rt,
          runtimeId,
          'if [ -f /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; else echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"; fi',
        );
        const [quota, period] = r.stdout.trim().split(/\s+/).map(Number);
        assert.ok(quota && period, r.stdout + r.stderr);
        assert.equal(quota / period, 0.5);
      } finally {
        await rt.remove(runtimeId);
      }
    });

    it('pids limit contains a fork bomb', async (t) => {
      const gap = context.gap('pidsLimit');
      if (gap) return t.skip(gap);
      const { runtimeId } = await rt.create(makeSpec(image, { pidsLimit: 64 }));
      try {
        const r = await runToEnd(
          rt,
          runtimeId,
          // The forks run in a subshell (a failed fork may end a shell); the count uses builtins only.
          '(i=0; while [ $i -lt 300 ]; do sleep 60 & i=$((i+1)); done) 2>/dev/null; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n',
        );
        const count = Number(r.stdout.trim());
        assert.ok(count > 10 && count <= 64, `processes: ${r.stdout} ${r.stderr.slice(0, 200)}`);
      } finally {
        await rt.remove(runtimeId);
      }
    });

    it('disk limit: writing past it fails', async (t) => {
      const gap = context.gap('diskWriteLimit');
      if (gap) return t.skip(gap);
      const { runtimeId } = await rt.create(makeSpec(image, { diskBytes: 64 * MiB }));
      try {
        const r = await runToEnd(rt, runtimeId, 'head -c 100000000 /dev/zero > /sandbox-workspace/big; echo rc=$?; wc -c < /sandbox-workspace/big');
        const [rc, written] = r.stdout.trim().split('\n');
        assert.match(rc ?? '', /rc=[1-9]/, r.stdout + r.stderr);
        assert.ok(Number(written) <= 64 * MiB, `wrote ${written} bytes`);
        const small = await runToEnd(rt, runtimeId, 'rm /sandbox-workspace/big && head -c 1000000 /dev/zero > /sandbox-workspace/ok && echo ok');
        assert.equal(small.stdout, 'ok\n', small.stderr);
      } finally {
        await rt.remove(runtimeId);
      }
    });

    it('networkAccess false: no interface but loopback, no route', async () => {
      const r = await runToEnd(rt, shared, 'ls /sys/class/net; echo ---; cat /proc/net/route');
      const [ifaces, routes] = r.stdout.split('---\n');
      assert.deepEqual(ifaces?.trim().split(/\s+/), ['lo']);
      assert.equal(routes?.trim().split('\n').length, 1, `routes: ${routes}`);
      const c = await runToEnd(rt, shared, 'timeout 5 nc -w 2 192.0.2.1 80 </dev/null; echo rc=$?');
      assert.match(c.stdout, /rc=[1-9]/);
    });

    it('networkAccess true: default route, no access to the host or other sandboxes', async (t) => {
      const gap = context.gap('networkPolicyEnforcement');
      if (gap) return t.skip(gap);
      const hits: string[] = [];
      const server: Server = createServer((socket) => {
        hits.push(String(socket.remoteAddress));
        socket.destroy();
      });
      await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
      const port = (server.address() as AddressInfo).port;
      const [a, b] = await Promise.all([rt.create(makeSpec(image, { networkAccess: true })), rt.create(makeSpec(image, { networkAccess: true }))]);
      try {
        const routes = (await runToEnd(rt, a.runtimeId, 'cat /proc/net/route')).stdout;
        const gateway = defaultGateway(routes);
        assert.ok(gateway, `no default route: ${routes}`);
        // Positive control: the test server answers on the host.
        await new Promise<void>((resolve, reject) => {
          const s = connect(port, '127.0.0.1', () => {
            s.destroy();
            resolve();
          });
          s.on('error', reject);
        });
        const before = hits.length;
        for (const host of [gateway, ...hostIPv4Addresses()]) {
          const r = await runToEnd(rt, a.runtimeId, `timeout 5 nc -w 2 ${host} ${port} </dev/null; echo rc=$?`);
          assert.match(r.stdout, /rc=[1-9]/, `connected to host ${host}: ${r.stdout}`);
        }
        assert.equal(hits.length, before, `host server was reached from the sandbox: ${hits.join(',')}`);
        const meta = await runToEnd(rt, a.runtimeId, 'timeout 5 nc -w 2 169.254.169.254 80 </dev/null; echo rc=$?');
        assert.match(meta.stdout, /rc=[1-9]/);

        // Sandbox b listens; it can reach itself, a cannot reach it.
        const bIp = (await runToEnd(rt, b.runtimeId, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")).stdout.trim();
        assert.match(bIp, /^\d+\.\d+\.\d+\.\d+$/);
        const listener = await rt.exec(b.runtimeId, { argv: ['/bin/sh', '-c', 'while :; do nc -l -p 8080 -e echo reached; done'] });
        listener.stdout.resume();
        listener.stderr.resume();
        let self = '';
        for (let i = 0; i < 20 && !self.includes('reached'); i++) {
          self = (await runToEnd(rt, b.runtimeId, `timeout 3 nc -w 2 ${bIp} 8080 </dev/null`)).stdout;
          if (!self.includes('reached')) await new Promise((r) => setTimeout(r, 100));
        }
        assert.match(self, /reached/, 'listener in sandbox b does not answer locally');
        const cross = await runToEnd(rt, a.runtimeId, `timeout 5 nc -w 2 ${bIp} 8080 </dev/null; echo rc=$?`);
        assert.doesNotMatch(cross.stdout, /reached/);
        await listener.kill('SIGKILL');
        t.diagnostic(`gateway ${gateway}, sandbox b ${bIp}`);
      } finally {
        server.close();
        await Promise.all([rt.remove(a.runtimeId), rt.remove(b.runtimeId)]);
      }
    });

    it('start command: sees env, writes logs, exit code via inspect and event', async () => {
      // It exits when told to (a fixed sleep could end before a loaded host had the sandbox ready).
      const spec = makeSpec(image, {
        env: { GREETING: 'hi there' },
        startCommand: 'echo "start:$GREETING"; echo to-stderr >&2; while [ ! -e /tmp/exit-now ]; do sleep 0.1; done; exit 7',
      });
      const { runtimeId } = await rt.create(spec);
      try {
        const exitedEvent = nextEvent(rt, (e) => e.runtimeId === runtimeId, 20_000);
        await runToEnd(rt, runtimeId, 'touch /tmp/exit-now');
        const exited = await exitedEvent;
        assert.deepEqual(exited, { type: 'exited', sandboxId: spec.sandboxId, runtimeId, exitCode: 7, oomKilled: false });
        const state = await rt.inspect(runtimeId);
        assert.equal(state?.running, false);
        assert.equal(state?.exitCode, 7);
        const logs = await rt.logs(runtimeId, 1000);
        assert.match(logs, /start:hi there/);
        assert.match(logs, /to-stderr/);
        const tail = await rt.logs(runtimeId, 5);
        assert.equal(tail.length, 5);
        assert.ok(logs.endsWith(tail));
      } finally {
        await rt.remove(runtimeId);
      }
    });

    it('start command that fails at once: START_FAILED', async () => {
      const spec = makeSpec(image, { startCommand: 'echo broken >&2; exit 3' });
      await assert.rejects(rt.create(spec), (e: unknown) => e instanceof RuntimeError && e.kind === 'START_FAILED' && /broken|3/.test(e.message));
      assert.ok(!(await rt.list()).some((s) => s.sandboxId === spec.sandboxId));
    });

    it('stats report usage against the limit', async () => {
      const stats = await rt.stats(shared);
      assert.equal(stats.memoryLimitBytes, 256 * MiB);
      assert.ok(stats.memoryBytes > 0);
      assert.ok(stats.cpuUsageNanos > 0);
      assert.ok(stats.pids >= 1);
    });

    it('remove while an exec is running', async () => {
      const { runtimeId } = await rt.create(makeSpec(image));
      const proc = await rt.exec(runtimeId, { argv: ['sleep', '1000'] });
      proc.stdout.resume();
      proc.stderr.resume();
      await rt.remove(runtimeId);
      const exit = await Promise.race([proc.wait(), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
      assert.notEqual(exit, 'hung');
      assert.equal(await rt.inspect(runtimeId), undefined);
    });

    it('list() only returns its own instance', async () => {
      const other = await makeRuntime();
      try {
        await other.runtime.init();
        const { runtimeId } = await other.runtime.create(makeSpec(other.image));
        assert.ok((await other.runtime.list()).some((s) => s.runtimeId === runtimeId));
        assert.ok(!(await rt.list()).some((s) => s.runtimeId === runtimeId));
        assert.equal(await rt.inspect(runtimeId), undefined);
        await rt.remove(runtimeId); // not ours: a no-op
        assert.equal((await other.runtime.inspect(runtimeId))?.running, true);
        await other.runtime.remove(runtimeId);
      } finally {
        await other.cleanup();
      }
    });

    it('image pull failure: IMAGE_PULL_FAILED with the reason', async () => {
      for (const ref of ['127.0.0.1:1/corral/nothing:latest', 'corral-test/does-not-exist:nope']) {
        await assert.rejects(
          rt.create(makeSpec(ref)),
          (e: unknown) => e instanceof RuntimeError && e.kind === 'IMAGE_PULL_FAILED' && e.message.length > 20,
        );
      }
    });
  });
}

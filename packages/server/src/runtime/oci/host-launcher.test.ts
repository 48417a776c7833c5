import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Frame, FrameReader, execFrame, frame } from '../agent-protocol.js';
import { HostLauncher, useHostLauncher } from './host-launcher.js';
import { ensureAgentBinary } from '../native-build.js';
import { runTool, ToolError } from '../run-tool.js';

const REPO = new URL('../../../../../', import.meta.url).pathname;
const BIN = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'native-test');

describe('host launcher', { skip: process.platform !== 'linux' ? 'Linux only' : undefined }, () => {
  let dir: string;
  let launcher: HostLauncher;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'corral-launcher-'));
    launcher = new HostLauncher(await ensureAgentBinary(BIN), join(dir, 'launcher.sock'));
    await launcher.start();
  });

  after(async () => {
    useHostLauncher(undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('runs tools: output, exit codes, stdin, missing programs, timeouts', async () => {
    assert.ok(launcher.available);
    assert.deepEqual(await launcher.run('sh', ['-c', 'echo out; echo err >&2; exit 3']), { stdout: 'out\n', stderr: 'err\n', exitCode: 3 });
    assert.deepEqual(await launcher.run('wc', ['-c'], { input: 'hello' }), { stdout: '5\n', stderr: '', exitCode: 0 });
    const missing = await launcher.run('corral-no-such-tool', []);
    assert.equal(missing?.exitCode, 127);
    assert.match(missing?.stderr ?? '', /cannot run corral-no-such-tool/);
    const nice = "cut -d' ' -f19 /proc/self/stat";
    assert.equal((await launcher.run('sh', ['-c', nice]))?.stdout, `${(await launcher.run('sh', ['-c', 'cut -d" " -f19 /proc/$PPID/stat']))?.stdout.trim()}\n`);
    assert.equal((await launcher.run('sh', ['-c', nice], { background: true }))?.stdout, '10\n', 'background tools run at nice 10');
    const started = Date.now();
    const slow = await launcher.run('sleep', ['30'], { timeoutMs: 100 });
    assert.equal(slow?.exitCode, 137);
    assert.ok(Date.now() - started < 10_000);
  });

  it('runTool goes through it when it is set, with the same results as spawn', async () => {
    useHostLauncher(launcher);
    try {
      assert.deepEqual(await runTool('sh', ['-c', 'echo $0 $1', 'a', 'b']), { stdout: 'a b\n', stderr: '' });
      await assert.rejects(runTool('sh', ['-c', 'echo bad >&2; exit 2']), (e: unknown) => e instanceof ToolError && e.exitCode === 2 && e.stderr === 'bad\n');
    } finally {
      useHostLauncher(undefined);
    }
  });

  it('after the exit frame the agent half-closes and reads on, so late frames cannot reset the connection', async () => {
    // Half-open allowed: this side decides when to close, as the launcher and the exec client do.
    const socket = createConnection({ path: join(dir, 'launcher.sock'), allowHalfOpen: true });
    const reader = new FrameReader();
    const types: number[] = [];
    let ended = false;
    let failed: Error | undefined;
    socket.on('data', (chunk: Buffer) => types.push(...reader.push(chunk).map((f) => f.type)));
    socket.on('end', () => (ended = true));
    socket.on('error', (error) => (failed = error));
    await new Promise((r) => socket.once('connect', r));
    socket.write(execFrame({ argv: ['true'], env: ['PATH=/usr/bin:/bin'], cwd: '/', uid: 0, gid: 0, groups: [], stdin: true }));
    for (let i = 0; i < 200 && !ended; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(ended, 'the agent shut its side down after the exit frame');
    assert.deepEqual(types, [Frame.pid, Frame.exit]);
    // Frames sent after the exit (a late stdin close, say) are read and dropped, not answered with a reset.
    socket.write(frame(Frame.stdin, Buffer.from('late')));
    socket.write(frame(Frame.stdinClose));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(failed, undefined);
    assert.equal(socket.destroyed, false, 'the agent keeps the connection until the host closes it');
    socket.end();
    await new Promise((r) => socket.once('close', r));
    assert.equal(failed, undefined);
  });

  it('launch() starts a process without waiting for it', async () => {
    const marker = join(dir, 'launched');
    assert.equal(await launcher.launch('sh', ['-c', `sleep 0.3; echo done > ${marker}`]), true);
    assert.equal(existsSync(marker), false, 'launch() returned before the process finished');
    for (let i = 0; i < 100 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(readFileSync(marker, 'utf8'), 'done\n');
  });

  it('without a launcher, runTool spawns, and background tools still run at nice 10', async () => {
    useHostLauncher(undefined);
    assert.deepEqual(await runTool('sh', ['-c', "cut -d' ' -f19 /proc/self/stat"], { background: true }), { stdout: '10\n', stderr: '' });
  });

  it('when its agent is gone, callers get undefined (and spawn), and it starts again', async () => {
    const pid = Number((await launcher.run('sh', ['-c', 'echo $PPID']))?.stdout.trim());
    assert.ok(pid > 1);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && launcher.available; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await launcher.run('true', []), undefined);
    useHostLauncher(launcher);
    try {
      assert.deepEqual(await runTool('echo', ['fallback']), { stdout: 'fallback\n', stderr: '' });
    } finally {
      useHostLauncher(undefined);
    }
    await launcher.start();
    assert.ok(launcher.available);
    assert.equal((await launcher.run('true', []))?.exitCode, 0);
  });
});

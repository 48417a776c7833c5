import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Frame, FrameReader, authFrame, execFrame, frame } from '../agent-protocol.js';
import { ensureAgentBinary } from '../native-build.js';
import { AGENT_SECRET_ENV, connectPodAgent, startPodAgentExec } from './pod-agent.js';

/**
 * `corral-agent init --listen-tcp` as the kubernetes driver runs it (PID 1 of a Pod), here on the
 * host at 127.0.0.1: no connection is honoured before it proved the secret over a fresh nonce.
 */

const REPO = new URL('../../../../../', import.meta.url).pathname;
const BIN = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'kubernetes-driver-bin');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** What a raw connection received before the agent closed it (or `ms` passed). */
async function exchange(port: number, send: (nonce: Buffer) => Buffer | null, ms = 3000): Promise<{ frames: { type: number; payload: Buffer }[]; closed: boolean }> {
  const socket: Socket = connect({ host: '127.0.0.1', port });
  const reader = new FrameReader();
  const frames: { type: number; payload: Buffer }[] = [];
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ frames, closed: false });
    }, ms);
    socket.on('data', (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        frames.push(f);
        if (f.type === Frame.nonce && frames.length === 1) {
          const reply = send(f.payload);
          if (reply) socket.write(reply);
        }
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ frames, closed: true });
    });
  });
}

describe('corral-agent init --listen-tcp', () => {
  let agent: ChildProcess;
  let port: number;
  let dir: string;
  const secret = randomBytes(32).toString('hex');

  before(async () => {
    const binary = await ensureAgentBinary(BIN);
    dir = await mkdtemp(join(tmpdir(), 'corral-agent-tcp-'));
    port = await freePort();
    agent = spawn(binary, ['init', `--listen-tcp=127.0.0.1:${port}`, `--secret-env=${AGENT_SECRET_ENV}`, '--', 'sleep', '600'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', VISIBLE: 'yes', [AGENT_SECRET_ENV]: secret },
      stdio: 'ignore',
    });
    for (let i = 0; i < 100; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const s = connect({ host: '127.0.0.1', port });
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (up) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  after(async () => {
    agent.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  const touch = (name: string): Buffer => execFrame({ argv: ['touch', join(dir, name)], env: [], cwd: '/', uid: 0, gid: 0, groups: [], stdin: false });

  it('runs nothing for a connection that sends an exec without the handshake, and closes it', async () => {
    const r = await exchange(port, () => touch('no-auth'));
    assert.equal(r.closed, true);
    assert.deepEqual(r.frames.map((f) => f.type), [Frame.nonce]);
    assert.equal(r.frames[0]?.payload.length, 32);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(existsSync(join(dir, 'no-auth')), false);
  });

  it('runs nothing for a wrong secret, nor for a handshake replayed from another connection', async () => {
    const wrong = await exchange(port, (nonce) => Buffer.concat([authFrame('not-the-secret-at-all', nonce), touch('wrong')]));
    assert.equal(wrong.closed, true);
    assert.deepEqual(wrong.frames.map((f) => f.type), [Frame.nonce]);
    // A recorded, valid answer to one nonce is worthless on the next connection.
    let recorded: Buffer = Buffer.alloc(0);
    const good = await exchange(port, (nonce) => {
      recorded = authFrame(secret, nonce);
      return Buffer.concat([recorded, execFrame({ argv: ['true'], env: [], cwd: '/', uid: 0, gid: 0, groups: [], stdin: false })]);
    });
    assert.ok(good.frames.some((f) => f.type === Frame.exit), 'the genuine handshake runs its exec');
    const replay = await exchange(port, () => Buffer.concat([recorded, touch('replayed')]));
    assert.equal(replay.closed, true);
    assert.deepEqual(replay.frames.map((f) => f.type), [Frame.nonce]);
    // Frames other than `A` first, even harmless ones, close it too.
    const early = await exchange(port, () => Buffer.concat([frame(Frame.stdin, Buffer.from('x')), touch('early')]));
    assert.equal(early.closed, true);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(existsSync(join(dir, 'wrong')), false);
    assert.equal(existsSync(join(dir, 'replayed')), false);
    assert.equal(existsSync(join(dir, 'early')), false);
  });

  it('closes a connection that never answers its nonce within 5 s', async () => {
    const started = Date.now();
    const r = await exchange(port, () => null, 8000);
    assert.equal(r.closed, true);
    assert.ok(Date.now() - started >= 4500, `closed after ${Date.now() - started} ms`);
  });

  it('with the secret: runs the command with the container environment, without the secret anywhere', async () => {
    const socket = await connectPodAgent({ host: '127.0.0.1', port, secret }, 3000);
    const proc = startPodAgentExec(socket, { argv: ['/bin/sh', '-c', 'env; cat /proc/1/environ 2>/dev/null | tr "\\0" "\\n"; echo "ppid-env:"; tr "\\0" "\\n" < /proc/$PPID/environ'], env: { EXTRA: '1' } });
    const out: Buffer[] = [];
    proc.stdout.on('data', (c: Buffer) => out.push(c));
    proc.stderr.resume();
    const { exitCode } = await proc.wait();
    const text = Buffer.concat(out).toString('utf8');
    assert.equal(exitCode, 0);
    assert.match(text, /^VISIBLE=yes$/m);
    assert.match(text, /^EXTRA=1$/m);
    assert.doesNotMatch(text, new RegExp(AGENT_SECRET_ENV));
    assert.ok(!text.includes(secret), 'the secret reaches no process and is gone from the agent\'s /proc/<pid>/environ');
    // The agent's own environ (root on the host may read it) no longer holds it either.
    const own = await readFile(`/proc/${agent.pid}/environ`);
    assert.ok(!own.toString('latin1').includes(secret));
  });

  it('refuses to start with a missing or short secret', async () => {
    const binary = await ensureAgentBinary(BIN);
    for (const value of [undefined, 'short']) {
      const child = spawn(binary, ['init', `--listen-tcp=127.0.0.1:${await freePort()}`, `--secret-env=${AGENT_SECRET_ENV}`, '--', 'true'], {
        env: value === undefined ? {} : { [AGENT_SECRET_ENV]: value },
        stdio: 'ignore',
      });
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      assert.equal(code, 1);
    }
  });
});

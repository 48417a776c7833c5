import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import { Frame, FrameReader, u32Frame } from '../agent-protocol.js';
import { EXEC_MARKER_ENV, startOciExec } from './oci-exec.js';

/** A frame the fake agent received. */
interface Received {
  type: number;
  payload: Buffer;
}

/** The NUL-terminated strings of an exec payload (cwd, argv, env, [user]) after its fixed head. */
function execStrings(payload: Buffer): { uid: number; gid: number; groups: number; argc: number; envc: number; strings: string[] } {
  const groups = payload.readUInt32BE(16);
  const text = payload.subarray(28 + 4 * groups).toString('utf8');
  return {
    uid: payload.readUInt32BE(8),
    gid: payload.readUInt32BE(12),
    groups,
    argc: payload.readUInt32BE(20),
    envc: payload.readUInt32BE(24),
    strings: text.split('\0').slice(0, -1),
  };
}

describe('oci exec client (against a fake agent)', () => {
  let dir: string;
  let server: Server;
  let socketPath: string;
  const connections: { socket: Socket; frames: Received[] }[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'corral-oci-exec-'));
    socketPath = join(dir, 'agent.sock');
    server = createServer((socket) => {
      const entry = { socket, frames: [] as Received[] };
      connections.push(entry);
      const reader = new FrameReader();
      socket.on('data', (chunk: Buffer) => entry.frames.push(...reader.push(chunk)));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  });

  after(async () => {
    for (const c of connections) c.socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  const target = () => ({ socketPath, env: ['PATH=/bin', 'LANG=C'], workingDir: '/work' });

  async function framesOf(index: number, count: number): Promise<Received[]> {
    for (let i = 0; i < 200 && (connections[index]?.frames.length ?? 0) < count; i++) await new Promise((r) => setTimeout(r, 5));
    return connections[index]?.frames ?? [];
  }

  it('sends a named user to the agent to resolve, and root without a lookup', async () => {
    const asUser = await startOciExec(target(), { argv: ['id'], user: 'alice:team' });
    const [userFrame] = await framesOf(connections.length - 1, 1);
    assert.equal(userFrame?.type, Frame.execAsUser);
    const parsed = execStrings(userFrame.payload);
    assert.deepEqual([parsed.uid, parsed.gid, parsed.groups], [0, 0, 0]);
    assert.equal(parsed.strings.at(-1), 'alice:team', 'the user spec follows the environment');
    const env = parsed.strings.slice(1 + parsed.argc, 1 + parsed.argc + parsed.envc);
    assert.ok(!env.some((e) => e.startsWith('HOME=')), 'HOME comes from the sandbox passwd, added by the agent');
    assert.ok(env.some((e) => e.startsWith(`${EXEC_MARKER_ENV}=`)));

    const asRoot = await startOciExec(target(), { argv: ['id'], user: 'root' });
    const [rootFrame] = await framesOf(connections.length - 1, 1);
    assert.equal(rootFrame?.type, Frame.exec);
    const root = execStrings(rootFrame.payload);
    assert.equal(root.strings.length, 1 + root.argc + root.envc, 'no user spec for root');
    assert.ok(root.strings.includes('HOME=/root'));
    for (const p of [asUser, asRoot]) {
      p.stdout.resume();
      p.stderr.resume();
    }
    for (const c of connections) c.socket.destroy();
    await Promise.all([asUser.wait(), asRoot.wait()]);
  });

  it('kill() is a signal frame to the agent; the server signals no pid itself', async () => {
    const killSpy = mock.method(process, 'kill', () => true);
    try {
      const proc = await startOciExec(target(), { argv: ['sleep', '100'] });
      proc.stdout.resume();
      proc.stderr.resume();
      const index = connections.length - 1;
      await framesOf(index, 1);
      await proc.kill('SIGKILL');
      await proc.kill('SIGTERM');
      const frames = await framesOf(index, 3);
      assert.deepEqual(
        frames.slice(1).map((f) => [f.type, f.payload.readUInt32BE(0)]),
        [
          [Frame.signal, 9],
          [Frame.signal, 15],
        ],
      );
      assert.equal(killSpy.mock.callCount(), 0, 'process.kill was called from the server');
      // After the exit frame, kill() sends nothing.
      connections[index]?.socket.end(u32Frame(Frame.exit, 137));
      assert.equal((await proc.wait()).exitCode, 137);
      await proc.kill('SIGKILL');
      assert.equal(connections[index]?.frames.length, 3);
      assert.equal(killSpy.mock.callCount(), 0);
    } finally {
      killSpy.mock.restore();
    }
  });
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { getFileViaExec, putFileViaExec } from './exec-files.js';
import type { ExecCapable } from './exec-files.js';
import { RuntimeError } from './runtime.js';
import type { ExecProcess, ExecRequest } from './runtime.js';

/**
 * A runtime whose `exec` runs processes on this machine with a real /bin/sh: the file helpers
 * only depend on `exec`, so this checks their streaming and error handling without a container.
 */
const kills: string[] = [];
const localExec: ExecCapable = {
  async exec(_runtimeId: string, request: ExecRequest): Promise<ExecProcess> {
    const [command, ...args] = request.argv;
    const child = spawn(command ?? '/bin/false', args, {
      cwd: request.cwd,
      env: { ...process.env, ...request.env },
      stdio: [request.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<{ exitCode: number }>((resolve) =>
      child.once('close', (code, signal) => resolve({ exitCode: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15) })),
    );
    const { stdout, stderr } = child;
    if (!stdout || !stderr) throw new Error('spawn without output pipes');
    return {
      stdout,
      stderr,
      stdin: child.stdin ?? null,
      wait: () => exited,
      kill: async (signal) => {
        kills.push(request.argv.join(' '));
        child.kill(signal ?? 'SIGKILL');
      },
      resize: async () => undefined,
    };
  },
};

/** Yields `total` bytes of a repeating pattern, one 64 KiB chunk at a time. */
function patternStream(total: number): Readable {
  let sent = 0;
  const chunk = Buffer.alloc(64 * 1024, 'corral-');
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      this.push(chunk.subarray(0, n));
    },
  });
}

describe('exec-files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'corral-exec-files-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips binary content and creates parent directories', async () => {
    const payload = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(300_000), Buffer.from('\n\n')]);
    const path = join(dir, 'a b', 'c', 'file.bin');
    assert.deepEqual(await putFileViaExec(localExec, 'x', path, Readable.from([payload])), { size: payload.length });
    assert.ok((await readFile(path)).equals(payload));
    const got = await getFileViaExec(localExec, 'x', path);
    assert.equal(got.size, payload.length);
    const chunks: Buffer[] = [];
    for await (const c of got.stream) chunks.push(c as Buffer);
    assert.ok(Buffer.concat(chunks).equals(payload));
  });

  it('reports missing files and directories as NOT_FOUND', async () => {
    for (const path of [join(dir, 'nope'), dir]) {
      await assert.rejects(getFileViaExec(localExec, 'x', path), (e: unknown) => e instanceof RuntimeError && e.kind === 'NOT_FOUND');
    }
  });

  it('fails with the shell error when the target cannot be written', async () => {
    await putFileViaExec(localExec, 'x', join(dir, 'plain'), Readable.from([Buffer.from('x')]));
    await assert.rejects(
      putFileViaExec(localExec, 'x', join(dir, 'plain', 'child'), Readable.from([Buffer.from('y')])),
      (e: unknown) => e instanceof RuntimeError && e.kind === 'RUNTIME_ERROR' && /exit [1-9]/.test(e.message),
    );
  });

  it('reports the shell error, not a broken pipe, when the shell fails before reading a large upload', async () => {
    await putFileViaExec(localExec, 'x', join(dir, 'plain2'), Readable.from([Buffer.from('x')]));
    // 8 MiB cannot fit the pipe, so the write meets a shell that has already exited.
    await assert.rejects(
      putFileViaExec(localExec, 'x', join(dir, 'plain2', 'child'), patternStream(8 * 1024 * 1024)),
      (e: unknown) => e instanceof RuntimeError && e.kind === 'RUNTIME_ERROR' && /exit [1-9]/.test(e.message) && /plain2/.test(e.message),
    );
  });

  it('streams 200 MB both ways without holding it in memory', async () => {
    const total = 200 * 1000 * 1000;
    const path = join(dir, 'big.bin');
    const baseline = process.memoryUsage().heapUsed;
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 10);
    try {
      assert.equal((await putFileViaExec(localExec, 'x', path, patternStream(total))).size, total);
      const got = await getFileViaExec(localExec, 'x', path);
      assert.equal(got.size, total);
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const c of got.stream) {
        hash.update(c as Buffer);
        bytes += (c as Buffer).length;
      }
      assert.equal(bytes, total);
      const expected = createHash('sha256');
      for await (const c of patternStream(total)) expected.update(c as Buffer);
      assert.equal(hash.digest('hex'), expected.digest('hex'));
    } finally {
      clearInterval(sampler);
    }
    assert.ok(peak - baseline < 64 * 1024 * 1024, `heap grew by ${((peak - baseline) / 1048576).toFixed(1)} MiB`);
  });

  it('stops the copy when the reader gives up early', async () => {
    const path = join(dir, 'early.bin');
    await putFileViaExec(localExec, 'x', path, patternStream(10 * 1024 * 1024));
    kills.length = 0;
    const got = await getFileViaExec(localExec, 'x', path);
    for await (const _chunk of got.stream) break;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(kills.length, 1, 'the reading process was not killed');
  });
});

describe('getFileViaExec when the consumer gives up', () => {
  it("kills the copy and drains the exec's output to its end, so the exec's stream (and a Docker exec socket) closes", async () => {
    let killed = false;
    // Output that goes on until the kill, and a little after it (what was in flight), as a runtime's
    // stream does; it ends only if someone reads it.
    let sent = 0;
    let afterKill = 0;
    const stdout = new Readable({
      highWaterMark: 1024,
      read() {
        if (sent === 0) this.push(Buffer.from('1073741824\n'));
        if (killed && ++afterKill > 8) return void this.push(null);
        sent += 1;
        setTimeout(() => this.push(Buffer.alloc(16 * 1024, 1)), 1);
      },
    });
    const proc: ExecProcess = {
      stdout,
      stderr: Readable.from([]),
      stdin: null,
      wait: async () => ({ exitCode: 137 }),
      kill: async () => {
        killed = true;
      },
      resize: async () => undefined,
    };
    const { stream } = await getFileViaExec({ exec: async () => proc }, 'rt', '/big');
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.destroy();
    await new Promise<void>((resolve, reject) => {
      if (stdout.readableEnded) return resolve();
      const timer = setTimeout(() => reject(new Error(`the exec's stdout was left paused after ${sent} chunks`)), 2_000);
      stdout.once('end', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    assert.ok(killed, 'the copy was killed');
  });
});

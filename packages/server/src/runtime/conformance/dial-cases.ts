import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { it } from 'node:test';
import type { SandboxRuntime } from '../runtime.js';
import { makeSpec, within } from './conformance-suite.js';
import type { ConformanceContext } from './conformance-suite.js';

/** Sends `payload` over a fresh connection to the port and resolves with what comes back (as many bytes). */
async function echoThrough(runtime: SandboxRuntime, runtimeId: string, port: number, payload: Buffer): Promise<Buffer> {
  const stream = await runtime.dial(runtimeId, port);
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let received = 0;
      stream.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (received >= payload.length) resolve(Buffer.concat(chunks));
      });
      stream.once('error', reject);
      stream.once('close', () => reject(new Error(`the connection closed after ${received} of ${payload.length} bytes`)));
      stream.write(payload);
    });
  } finally {
    stream.destroy();
  }
}

/** Starts an echo server on `port` inside the sandbox (busybox `nc -e cat`, one connection at a time); the returned function stops it. */
async function startEcho(runtime: SandboxRuntime, runtimeId: string, port: number): Promise<() => Promise<void>> {
  const server = await runtime.exec(runtimeId, { argv: ['/bin/sh', '-c', `while :; do nc -l -p ${port} -e cat; done`] });
  server.stdout.resume();
  server.stderr.resume();
  return () => server.kill('SIGKILL').catch(() => undefined);
}

/** Echoes a payload once the server answers, retrying while it is still starting; resolves with what came back. */
async function echoWhenUp(runtime: SandboxRuntime, runtimeId: string, port: number, payload: Buffer): Promise<Buffer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      return await within(10_000, 'an echo through dial', echoThrough(runtime, runtimeId, port, payload));
    } catch (error) {
      lastError = error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw lastError;
}

/** Resolves with the error a connection fails with; rejects when it ends without one. */
function failureOf(stream: Duplex): Promise<Error> {
  return new Promise((resolve, reject) => {
    stream.once('error', resolve);
    stream.once('close', () => setTimeout(() => reject(new Error('the connection closed without an error')), 100));
    stream.resume();
  });
}

/** Dialing a port nothing listens on fails (the dial or the stream) with an error that says "refused". */
async function assertRefused(runtime: SandboxRuntime, runtimeId: string, port: number): Promise<void> {
  let error: unknown;
  try {
    error = await within(15_000, 'dialing a closed port', runtime.dial(runtimeId, port).then(failureOf));
  } catch (rejected) {
    error = rejected;
  }
  assert.ok(error instanceof Error, `dial fails with an Error, not ${String(error)}`);
  assert.match(error.message, /refused/i);
}

/** `SandboxRuntime.dial`: the byte stream the proxy, SSH and exposures reach sandbox ports through. */
export function registerDialCases(context: ConformanceContext): void {
  const port = 20_000 + Math.floor(Math.random() * 10_000);

  it('dial: bytes flow both ways to a port the sandbox listens on, without network and with it; a closed port is refused', async () => {
    const runtime = context.runtime;
    const networked = await runtime.create(makeSpec(context.image, { networkAccess: true }));
    try {
      for (const runtimeId of [context.shared, networked.runtimeId]) {
        const stop = await startEcho(runtime, runtimeId, port);
        try {
          const small = Buffer.from(`hello ${randomBytes(4).toString('hex')}\n`);
          assert.deepEqual(await echoWhenUp(runtime, runtimeId, port, small), small);
          const large = randomBytes(256 * 1024);
          assert.ok((await echoWhenUp(runtime, runtimeId, port, large)).equals(large), '256 KiB come back unchanged');
        } finally {
          await stop();
        }
        await assertRefused(runtime, runtimeId, port + 1);
      }
    } finally {
      await runtime.remove(networked.runtimeId);
    }
  });

  it('dial: a port nothing listens on fails with "connection refused"', async () => {
    await assertRefused(context.runtime, context.shared, port + 1);
  });
}

import { PassThrough, Transform } from 'node:stream';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { orAfter } from '../util/time.js';
import { RuntimeError } from './runtime.js';
import type { ExecProcess, SandboxRuntime } from './runtime.js';

/** The part of a runtime the file helpers use. */
export type ExecCapable = Pick<SandboxRuntime, 'exec'>;

/** Exit status the read script uses for "no such regular file". */
const MISSING_EXIT = 44;

/** Writes stdin to "$1", creating parent directories. */
const PUT_SCRIPT = 'mkdir -p "$(dirname "$1")" && cat > "$1"';
/** Prints the size of "$1" on one line, then its bytes; exits 44 when it is not a regular file. */
const GET_SCRIPT = `[ -f "$1" ] || exit ${MISSING_EXIT}; wc -c < "$1" | tr -d ' '; exec cat "$1"`;
/** At most this much stderr is kept for error messages. */
const STDERR_LIMIT = 4096;

/**
 * Writes `content` to `path` inside a sandbox by streaming it into `cat` over an exec's stdin.
 * Nothing is buffered beyond stream back-pressure windows. Returns the bytes written.
 */
export async function putFileViaExec(
  runtime: ExecCapable,
  runtimeId: string,
  path: string,
  content: Readable,
): Promise<{ size: number }> {
  const proc = await runtime.exec(runtimeId, { argv: ['/bin/sh', '-c', PUT_SCRIPT, 'corral-put', path], stdin: true });
  const stdin = proc.stdin;
  if (!stdin) throw new RuntimeError('RUNTIME_ERROR', 'exec did not provide stdin');
  const stderr = collectBounded(proc.stderr);
  proc.stdout.resume();
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      callback(null, chunk);
    },
  });
  const failed = async (exitCode: number): Promise<RuntimeError> =>
    new RuntimeError('RUNTIME_ERROR', `writing ${path} failed (exit ${exitCode}): ${(await stderr).trim()}`);
  try {
    await pipeline(content, counter, stdin);
  } catch (error) {
    // A broken pipe usually means the shell gave up first (say, a parent path is a file): its
    // exit status and stderr say why, so report those when it has ended.
    const ended = await orAfter(proc.wait(), EXIT_AFTER_PIPE_ERROR_MS, undefined);
    if (ended !== undefined && ended.exitCode !== 0) throw await failed(ended.exitCode);
    await proc.kill('SIGKILL').catch(() => undefined);
    throw error;
  }
  const { exitCode } = await proc.wait();
  if (exitCode !== 0) throw await failed(exitCode);
  return { size };
}

/** How long a failed upload waits for the shell's exit status before it kills the shell. */
const EXIT_AFTER_PIPE_ERROR_MS = 1000;


/**
 * Streams `path` out of a sandbox through `cat`. Resolves once the size is known; the stream
 * errors if the copy fails part-way. Throws `RuntimeError('NOT_FOUND')` when `path` is not a
 * regular file.
 */
export async function getFileViaExec(
  runtime: ExecCapable,
  runtimeId: string,
  path: string,
): Promise<{ size: number; stream: Readable }> {
  const proc = await runtime.exec(runtimeId, { argv: ['/bin/sh', '-c', GET_SCRIPT, 'corral-get', path] });
  const stderr = collectBounded(proc.stderr);
  const header = await readSizeLine(proc);
  if (header === undefined) {
    const { exitCode } = await proc.wait();
    if (exitCode === MISSING_EXIT) throw new RuntimeError('NOT_FOUND', `no such file: ${path}`);
    throw new RuntimeError('RUNTIME_ERROR', `reading ${path} failed (exit ${exitCode}): ${(await stderr).trim()}`);
  }
  const size = Number(header.line);
  if (!Number.isSafeInteger(size)) {
    await proc.kill('SIGKILL').catch(() => undefined);
    throw new RuntimeError('RUNTIME_ERROR', `reading ${path}: unexpected size line ${JSON.stringify(header.line)}`);
  }
  const out = new PassThrough();
  if (header.rest.length > 0) out.write(header.rest);
  proc.stdout.pipe(out, { end: false });
  proc.stdout.once('end', () => {
    void proc.wait().then(
      async ({ exitCode }) => {
        if (exitCode === 0) out.end();
        else out.destroy(new RuntimeError('RUNTIME_ERROR', `reading ${path} failed (exit ${exitCode}): ${(await stderr).trim()}`));
      },
      (error: unknown) => out.destroy(error instanceof Error ? error : new Error(String(error))),
    );
  });
  out.once('close', () => {
    // The consumer gave up early: stop the copy, and drain what is still in flight so the exec's
    // stream ends and its connection closes (a paused stream keeps a Docker exec socket open).
    if (proc.stdout.readableEnded) return;
    proc.stdout.unpipe(out);
    proc.stdout.resume();
    void proc.kill('SIGKILL').catch(() => undefined);
  });
  return { size, stream: out };
}

/** Reads stdout up to the first newline; undefined if it ends first. Leaves stdout paused. */
function readSizeLine(proc: ExecProcess): Promise<{ line: string; rest: Buffer } | undefined> {
  const stdout = proc.stdout;
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const newline = buffered.indexOf(0x0a);
      if (newline >= 0) {
        cleanup();
        stdout.pause();
        resolve({ line: buffered.subarray(0, newline).toString('utf8').trim(), rest: buffered.subarray(newline + 1) });
      } else if (buffered.length > 64) {
        cleanup();
        reject(new RuntimeError('RUNTIME_ERROR', 'unexpected output before file content'));
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve(undefined);
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const cleanup = (): void => {
      stdout.off('data', onData);
      stdout.off('end', onEnd);
      stdout.off('error', onError);
    };
    stdout.on('data', onData);
    stdout.once('end', onEnd);
    stdout.once('error', onError);
  });
}

/** Collects up to STDERR_LIMIT (4 KiB) characters of a stream, draining the rest: a process's stderr, for an error message. */
export function collectBounded(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    stream.on('data', (chunk: Buffer) => {
      if (text.length < STDERR_LIMIT) text += chunk.toString('utf8').slice(0, STDERR_LIMIT - text.length);
    });
    stream.once('end', () => resolve(text));
    stream.once('close', () => resolve(text));
    stream.once('error', () => resolve(text));
  });
}

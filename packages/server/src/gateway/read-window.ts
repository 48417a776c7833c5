import type { SandboxRuntime } from '../runtime/runtime.js';
import { BoundedOutput } from './bounded-output.js';

/** The most bytes `/read-file` returns in one call (Prime's limit). */
export const MAX_READ_BYTES = 10 * 1024 * 1024;

const MISSING_EXIT = 44;
const TOO_LARGE_EXIT = 45;

/**
 * Prints "<size> <start> <length>" on one line, then that window of the file. Arguments: $1 path,
 * $2 offset ("" = 0, negative = from the end), $3 length ("" = to the end), $4 most bytes allowed.
 * Exits 44 when $1 is not a regular file, 45 (after the header line) when the window is too big.
 * dd skips whole 4 KiB blocks with a seek, so a tail read of a big file costs only the window.
 */
const READ_SCRIPT = `
f="$1"; off="$2"; len="$3"; max="$4"
[ -f "$f" ] || exit ${MISSING_EXIT}
size=$(stat -c %s -- "$f" 2>/dev/null) || size=$(wc -c < "$f" | tr -d ' ')
[ -n "$off" ] || off=0
if [ "$off" -lt 0 ]; then off=$((size + off)); [ "$off" -lt 0 ] && off=0; fi
[ "$off" -gt "$size" ] && off=$size
avail=$((size - off))
if [ -z "$len" ] || [ "$len" -gt "$avail" ]; then len=$avail; fi
echo "$size $off $len"
[ "$len" -gt "$max" ] && exit ${TOO_LARGE_EXIT}
[ "$len" -eq 0 ] && exit 0
head_skip=$((off % 4096))
dd if="$f" bs=4096 skip=$((off / 4096)) count=$(((head_skip + len + 4095) / 4096)) 2>/dev/null | tail -c +$((head_skip + 1)) | head -c "$len"
`;

/** The result of reading a window of a file. */
export type ReadWindowResult =
  | { kind: 'ok'; content: Buffer; totalSize: number; offset: number }
  | { kind: 'missing' }
  | { kind: 'too-large'; totalSize: number; length: number }
  | { kind: 'failed'; message: string };

/**
 * Reads `length` bytes (default: to the end) from `offset` (negative: from the end) of a file in
 * a sandbox with one exec. Never holds more than `maxBytes` plus a line in memory. When `signal`
 * aborts, the exec is killed and the promise rejects with the signal's reason.
 */
export async function readWindow(
  runtime: SandboxRuntime,
  runtimeId: string,
  path: string,
  window: { offset: number | undefined; length: number | undefined; maxBytes: number },
  signal?: AbortSignal,
): Promise<ReadWindowResult> {
  const proc = await runtime.exec(runtimeId, {
    argv: ['/bin/sh', '-c', READ_SCRIPT, 'corral-read', path, window.offset?.toString() ?? '', window.length?.toString() ?? '', String(window.maxBytes)],
  });
  const stdout = new BoundedOutput(proc.stdout, window.maxBytes + 64);
  const stderr = new BoundedOutput(proc.stderr, 4096);
  const exited = proc.wait();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => {
      void proc.kill('SIGKILL').catch(() => undefined);
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  let exitCode: number;
  try {
    ({ exitCode } = await Promise.race([exited, aborted]));
  } finally {
    if (onAbort) signal?.removeEventListener('abort', onAbort);
    exited.catch(() => undefined);
  }
  if (exitCode === MISSING_EXIT) return { kind: 'missing' };
  const out = stdout.bytes();
  const newline = out.indexOf(0x0a);
  const header = newline >= 0 ? /^(\d+) (\d+) (\d+)$/.exec(out.subarray(0, newline).toString('latin1')) : null;
  if (!header) {
    return { kind: 'failed', message: `reading ${path} failed (exit ${exitCode}): ${stderr.text().trim() || 'no output'}` };
  }
  const [totalSize, offset, length] = [Number(header[1]), Number(header[2]), Number(header[3])];
  if (exitCode === TOO_LARGE_EXIT) return { kind: 'too-large', totalSize, length };
  const content = out.subarray(newline + 1);
  if (exitCode !== 0 || content.length !== length) {
    return { kind: 'failed', message: `reading ${path} failed (exit ${exitCode}, ${content.length} of ${length} bytes): ${stderr.text().trim()}` };
  }
  return { kind: 'ok', content, totalSize, offset };
}

import type { ExecRequest, SandboxRuntime } from '../runtime/runtime.js';
import { BoundedOutput } from './bounded-output.js';

/** How a gateway exec ended. */
export interface CommandOutcome {
  stdout: string;
  stderr: string;
  /** Exit status; meaningless when `timedOut` or `aborted`. */
  exitCode: number;
  timedOut: boolean;
  /** The caller went away before the command finished. */
  aborted: boolean;
}

/** After killing a process tree, how long to wait for its output streams to close. */
const KILL_DRAIN_MS = 5000;

/**
 * Runs one process to completion, keeping at most `maxOutputBytes` of stdout and of stderr.
 * On timeout, or when `signal` aborts, the whole process tree is killed with SIGKILL and the
 * output read so far is returned. Resolves as soon as the process has exited and its output
 * streams have closed (Docker closes them at most about 2 s after the foreground process exits,
 * even when a background child still holds them).
 */
export async function runCommand(
  runtime: SandboxRuntime,
  runtimeId: string,
  request: ExecRequest,
  options: { timeoutMs: number; maxOutputBytes: number; signal?: AbortSignal },
): Promise<CommandOutcome> {
  const proc = await runtime.exec(runtimeId, request);
  const stdout = new BoundedOutput(proc.stdout, options.maxOutputBytes);
  const stderr = new BoundedOutput(proc.stderr, options.maxOutputBytes);
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const stopped = new Promise<'timeout' | 'aborted'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), options.timeoutMs);
    onAbort = () => resolve('aborted');
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
  const exited = proc.wait();
  try {
    const first = await Promise.race([exited.then((exit) => ({ exit })), stopped]);
    if (typeof first === 'object') {
      return { stdout: stdout.text(), stderr: stderr.text(), exitCode: first.exit.exitCode, timedOut: false, aborted: false };
    }
    await Promise.race([proc.kill('SIGKILL').catch(() => undefined), new Promise((resolve) => setTimeout(resolve, KILL_DRAIN_MS).unref())]);
    let drainTimer: NodeJS.Timeout | undefined;
    await Promise.race([
      exited.catch(() => undefined),
      new Promise((resolve) => {
        drainTimer = setTimeout(resolve, KILL_DRAIN_MS);
      }),
    ]);
    clearTimeout(drainTimer);
    return { stdout: stdout.text(), stderr: stderr.text(), exitCode: 137, timedOut: first === 'timeout', aborted: first === 'aborted' };
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener('abort', onAbort);
    exited.catch(() => undefined);
  }
}

import type { ExecRequest, SandboxRuntime } from '../runtime/runtime.js';
import { BoundedOutput } from './bounded-output.js';
import type { OutputReservation } from './output-budget.js';

/** How a gateway exec ended. */
export interface CommandOutcome {
  /** What was kept of stdout (`text()` or `jsonSlices()`). */
  stdout: BoundedOutput;
  stderr: BoundedOutput;
  /** Exit status; meaningless when `timedOut` or `aborted`. */
  exitCode: number;
  timedOut: boolean;
  /** The caller went away before the command finished. */
  aborted: boolean;
  /** Gives the output's share of the shared budget back; call once the answer has been sent. */
  dispose: () => void;
}

/** After killing a process tree, how long to wait for its output streams to close. */
const KILL_DRAIN_MS = 5000;

/**
 * Runs one process to completion, keeping at most `maxOutputBytes` of stdout and of stderr (and,
 * with a `budget`, no more than it grants across all calls).
 * On timeout, or when `signal` aborts, the whole process tree is killed with SIGKILL and the
 * output read so far is returned. Resolves as soon as the process has exited and its output
 * streams have closed (Docker closes them at most about 2 s after the foreground process exits,
 * even when a background child still holds them).
 */
export async function runCommand(
  runtime: SandboxRuntime,
  runtimeId: string,
  request: ExecRequest,
  options: { timeoutMs: number; maxOutputBytes: number; signal?: AbortSignal; budget?: OutputReservation },
): Promise<CommandOutcome> {
  const proc = await runtime.exec(runtimeId, request);
  const stdout = new BoundedOutput(proc.stdout, options.maxOutputBytes, options.budget);
  const stderr = new BoundedOutput(proc.stderr, options.maxOutputBytes, options.budget);
  const dispose = (): void => {
    stdout.dispose();
    stderr.dispose();
  };
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
      return { stdout, stderr, exitCode: first.exit.exitCode, timedOut: false, aborted: false, dispose };
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
    return { stdout, stderr, exitCode: 137, timedOut: first === 'timeout', aborted: first === 'aborted', dispose };
  } catch (error) {
    dispose();
    throw error;
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener('abort', onAbort);
    exited.catch(() => undefined);
  }
}

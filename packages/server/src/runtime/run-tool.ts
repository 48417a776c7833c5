import { spawn } from 'node:child_process';

/** How a host tool is run. */
export interface ToolOptions {
  /** Written to its stdin, which is then closed. */
  input?: string | Buffer;
  /** SIGKILL after this long. */
  timeoutMs?: number;
  /** At a lower CPU priority (nice 10): pool refills and teardown, which must not slow sandbox starts. */
  background?: boolean;
}

/** What a launched tool printed and how it ended. */
export interface LaunchedRun {
  stdout: string;
  stderr: string;
  /** Exit status; 128+N when killed by signal N; null when it could not be started. */
  exitCode: number | null;
}

/**
 * Something that starts host tools more cheaply than `child_process.spawn` (the oci driver's
 * host-side agent). `run` resolves undefined when it cannot run the tool now; {@link runTool}
 * then spawns it itself.
 */
export interface ToolLauncher {
  run(command: string, args: readonly string[], options?: ToolOptions): Promise<LaunchedRun | undefined>;
}

let launcher: ToolLauncher | undefined;

/** Routes {@link runTool} through `next` (undefined: spawn every tool). A driver sets it in its `init()`. */
export function useToolLauncher(next: ToolLauncher | undefined): void {
  launcher = next;
}

/** What a host tool printed. */
export interface ToolOutput {
  stdout: string;
  stderr: string;
}

/** A host tool that exited non-zero (or could not start); carries its stderr. */
export class ToolError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(`${command} failed (${exitCode === null ? 'did not run' : `exit ${exitCode}`}): ${stderr.trim().slice(-2000)}`, options);
    this.name = 'ToolError';
  }
}

/**
 * Runs a host tool to completion and collects its output (bounded to the last 1 MiB per stream),
 * through the tool launcher when one is set ({@link useToolLauncher}), else with `spawn`.
 * Rejects with {@link ToolError} on a non-zero exit.
 */
export async function runTool(command: string, args: readonly string[], options: ToolOptions = {}): Promise<ToolOutput> {
  const launched = await launcher?.run(command, args, options);
  if (launched === undefined) return spawnTool(command, args, options);
  if (launched.exitCode === 0) return { stdout: launched.stdout, stderr: launched.stderr };
  throw new ToolError(`${command} ${args.slice(0, 6).join(' ')}`, launched.exitCode, launched.stderr);
}

function spawnTool(command: string, args: readonly string[], options: ToolOptions): Promise<ToolOutput> {
  return new Promise((resolve, reject) => {
    const [file, argv] = options.background ? ['nice', ['-n', '10', command, ...args]] : [command, [...args]];
    const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const limit = 1024 * 1024;
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
      if (stdout.length > limit) stdout = stdout.slice(-limit);
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
      if (stderr.length > limit) stderr = stderr.slice(-limit);
    });
    const timer = options.timeoutMs !== undefined ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : undefined;
    child.once('error', (error) => {
      if (timer) clearTimeout(timer);
      reject(new ToolError(`${command} ${args.join(' ')}`, null, String(error), { cause: error }));
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new ToolError(`${command} ${args.slice(0, 6).join(' ')}`, code ?? (signal ? 128 : null), stderr));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

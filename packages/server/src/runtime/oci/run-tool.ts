import { spawn } from 'node:child_process';
import { hostLauncher } from './host-launcher.js';
import type { ToolOptions } from './host-launcher.js';

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
 * through the host launcher when one runs (see host-launcher.ts), else with `spawn`.
 * Rejects with {@link ToolError} on a non-zero exit.
 */
export async function runTool(command: string, args: readonly string[], options: ToolOptions = {}): Promise<ToolOutput> {
  const launched = await hostLauncher()?.run(command, args, options);
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

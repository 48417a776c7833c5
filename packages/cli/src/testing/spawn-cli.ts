import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../main.ts', import.meta.url));
/** The installed entry point: runs the compiled dist/ build, as scripts/serve.sh does. */
const BIN = fileURLToPath(new URL('../../bin/corral.js', import.meta.url));

/** Output and exit status of one CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Spawns `corral` from source, as a user's shell would run it; with `built`, the compiled
 * `bin/corral.js` (dist/, which the test script builds first) instead.
 */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, options: { built?: boolean } = {}): ChildProcess {
  const command = options.built ? [BIN, ...args] : ['--conditions=development', '--import', 'tsx', MAIN, ...args];
  return spawn(process.execPath, command, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs `corral` to completion and collects its output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const child = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Polls a URL until it answers 200 or the deadline passes. */
export async function waitForHealthy(url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = String(error);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not healthy after ${timeoutMs} ms: ${last}`);
}

import { waitForCheckpoint } from '@corral/sdk';
import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

/**
 * `corral sandbox checkpoint ID [--memory] [--wait] [--timeout SECONDS]`: takes a checkpoint of a
 * RUNNING or PAUSED sandbox and prints its id and state (PENDING; with `--wait`, DURABLE once it
 * is stored, or an error when it failed). `--memory` captures its processes too.
 */
export async function checkpointSandbox(id: string, options: { memory?: boolean; wait?: boolean; timeout?: string }, globals: GlobalOptions): Promise<void> {
  const timeoutSeconds = options.timeout === undefined ? 300 : Number(options.timeout);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw new Error(`--timeout expects a positive number of seconds, got "${options.timeout}"`);
  const client = clientFor(globals);
  let checkpoint = await client.sandboxes.checkpoint(id, options.memory ? { memory: true } : null);
  if (options.wait) checkpoint = await waitForCheckpoint(client, checkpoint.id, { timeoutMs: timeoutSeconds * 1000 });
  if (globals.output === 'json') printResult('json', checkpoint, [], []);
  else process.stdout.write(`${checkpoint.id} ${checkpoint.state}\n`);
}

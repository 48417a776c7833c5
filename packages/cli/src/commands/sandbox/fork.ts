import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

/**
 * `corral sandbox fork ID --count N [--memory]` (checkpoint the sandbox, then N sandboxes from it) or
 * `corral sandbox fork --checkpoint CHECKPOINT_ID --count N [--name NAME] [-l LABEL]…` (N sandboxes
 * from a DURABLE checkpoint): prints the new sandboxes' ids, one a line (`-o json`: the answer).
 */
export async function forkSandbox(
  id: string | undefined,
  options: { count: string; checkpoint?: string; memory?: boolean; name?: string; label?: string[] },
  globals: GlobalOptions,
): Promise<void> {
  const count = Number(options.count);
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new Error(`--count expects a whole number from 1 to 64, got "${options.count}"`);
  if ((id === undefined) === (options.checkpoint === undefined)) throw new Error('give a sandbox id or --checkpoint CHECKPOINT_ID (one of them)');
  const client = clientFor(globals);
  if (options.checkpoint !== undefined) {
    if (options.memory) throw new Error('--memory applies when forking a sandbox (its checkpoint is taken then); a checkpoint already says what it captured');
    const result = await client.sandboxes.forkCheckpoint(options.checkpoint, {
      count,
      ...(options.name !== undefined ? { name: options.name } : {}),
      ...(options.label ? { labels: options.label } : {}),
    });
    if (globals.output === 'json') printResult('json', result, [], []);
    else for (const s of result.sandboxes) process.stdout.write(`${s.id}\n`);
    return;
  }
  if (options.name !== undefined || options.label) throw new Error('--name and --label apply to --checkpoint forks; a fork of a sandbox keeps its name and labels');
  const result = await client.sandboxes.fork(id as string, { count, ...(options.memory ? { memory: true } : {}) });
  if (globals.output === 'json') {
    printResult('json', result, [], []);
    return;
  }
  process.stderr.write(`checkpoint ${result.checkpoint.id} ${result.checkpoint.state}\n`);
  for (const s of result.sandboxes) process.stdout.write(`${s.id}\n`);
}

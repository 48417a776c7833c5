import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import { age, clientFor } from './sdk-client.js';

/** `corral sandbox get ID`. */
export function registerGet(sandbox: Command): void {
  sandbox
    .command('get <id>')
    .description('Show one sandbox')
    .action(
      run(async (id: string, _options: object, globals: GlobalOptions) => {
        const s = await clientFor(globals).sandboxes.get(id);
        if (globals.output === 'json') {
          printResult('json', s, [], []);
          return;
        }
        const rows: Array<[string, unknown]> = [
          ['id', s.id],
          ['name', s.name],
          ['image', s.dockerImage],
          ['status', s.status],
          ['resources', `${s.cpuCores} CPU, ${s.memoryGB} GB memory, ${s.diskSizeGB} GB disk`],
          ['labels', s.labels.join(', ') || '-'],
          ['created', `${s.createdAt} (${age(s.createdAt)} ago)`],
          ['started', s.startedAt ?? '-'],
          ['timeout', `${s.timeoutMinutes} min`],
          ['error', s.errorType ? `${s.errorType}: ${s.errorMessage ?? ''}` : '-'],
        ];
        for (const [k, v] of rows) process.stdout.write(`${k.padEnd(10)} ${String(v)}\n`);
      }),
    );
}

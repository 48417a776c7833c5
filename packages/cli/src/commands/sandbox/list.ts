import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import { age, clientFor, collect } from './sdk-client.js';

/** `corral sandbox list`: a table (id, name, image, status, age) or `--output json`. */
export function registerList(sandbox: Command): void {
  sandbox
    .command('list')
    .alias('ls')
    .description('List your sandboxes (active ones unless --all or --status)')
    .option('-l, --label <label>', 'only sandboxes with this label (repeatable; all must match)', collect)
    .option('--status <status>', 'only this status (PENDING, RUNNING, TERMINATED, …)')
    .option('-a, --all', 'include ended sandboxes')
    .option('-p, --page <n>', 'page', '1')
    .option('-n, --num <n>', 'per page (≤ 1000)', '50')
    .action(
      run(async (options: { label?: string[]; status?: string; all?: boolean; page: string; num: string }, globals: GlobalOptions) => {
        const client = clientFor(globals);
        const result = await client.sandboxes.list({
          page: Number(options.page),
          per_page: Number(options.num),
          ...(options.label ? { labels: options.label } : {}),
          ...(options.status ? { status: options.status.toUpperCase() as 'RUNNING' } : {}),
          ...(!options.all && !options.status ? { is_active: true } : {}),
        });
        const rows = result.sandboxes.map((s) => ({ id: s.id, name: s.name, image: s.dockerImage, status: s.status, age: age(s.createdAt) }));
        printResult(globals.output, result, rows, ['id', 'name', 'image', 'status', 'age']);
        if (globals.output !== 'json' && result.has_next) process.stderr.write(`(${result.total} in all; next page: --page ${result.page + 1})\n`);
      }),
    );
}

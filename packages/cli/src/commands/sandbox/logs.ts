import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import { clientFor } from './sdk-client.js';

/** `corral sandbox logs ID`: the start command's output. */
export function registerLogs(sandbox: Command): void {
  sandbox
    .command('logs <id>')
    .description("Print the start command's output")
    .action(
      run(async (id: string, _options: object, globals: GlobalOptions) => {
        const result = await clientFor(globals).sandboxes.logs(id);
        if (globals.output === 'json') printResult('json', result, [], []);
        else process.stdout.write(result.logs.endsWith('\n') || result.logs === '' ? result.logs : `${result.logs}\n`);
      }),
    );
}

import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import { clientFor } from './sdk-client.js';

/** `corral sandbox unexpose ID EXPOSURE_ID`: removes an exposure and cuts its connections. */
export function registerUnexpose(sandbox: Command): void {
  sandbox
    .command('unexpose <id> <exposureId>')
    .description('Remove an exposed port (see `corral sandbox ports ID` for exposure ids)')
    .action(
      run(async (id: string, exposureId: string, _options: object, globals: GlobalOptions) => {
        const result = await clientFor(globals).sandboxes.unexpose(id, exposureId);
        if (globals.output === 'json') printResult('json', result, [], []);
        else process.stdout.write(`${result.message}\n`);
      }),
    );
}

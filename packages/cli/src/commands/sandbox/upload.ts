import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { Sandbox } from '@corral/sdk';
import { type GlobalOptions, run } from '../../run.js';
import { clientFor, progressReporter } from './sdk-client.js';

/** `corral sandbox upload ID LOCAL REMOTE`: streams a file in (REMOTE ending in / gets LOCAL's name). */
export function registerUpload(sandbox: Command): void {
  sandbox
    .command('upload <id> <local> <remote>')
    .description('Copy a local file into a sandbox, streamed (parent directories are created; "-" reads stdin)')
    .action(
      run(async (id: string, local: string, remote: string, _options: object, globals: GlobalOptions) => {
        const target = remote.endsWith('/') ? `${remote}${basename(local)}` : remote;
        const total = local === '-' ? undefined : statSync(local).size;
        const source = local === '-' ? process.stdin : createReadStream(local);
        const handle = await Sandbox.connect(clientFor(globals), id);
        const progress = progressReporter(`upload ${target}`);
        const result = await handle.uploadFile(target, source, { onProgress: (done) => progress.update(done, total) });
        progress.finish(result.size);
        if (globals.output === 'json') process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      }),
    );
}

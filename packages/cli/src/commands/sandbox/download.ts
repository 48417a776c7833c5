import { createWriteStream } from 'node:fs';
import { basename, join } from 'node:path';
import { statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { Sandbox } from '@corral/sdk';
import { type GlobalOptions, run } from '../../run.js';
import { clientFor, progressReporter } from './sdk-client.js';

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** `corral sandbox download ID REMOTE LOCAL`: streams a file out ("-" writes to stdout). */
export function registerDownload(sandbox: Command): void {
  sandbox
    .command('download <id> <remote> [local]')
    .description('Copy a file out of a sandbox, streamed (LOCAL defaults to its name here; "-" writes stdout)')
    .action(
      run(async (id: string, remote: string, local: string | undefined, _options: object, globals: GlobalOptions) => {
        const handle = await Sandbox.connect(clientFor(globals), id);
        const progress = progressReporter(`download ${remote}`);
        let received = 0;
        const stream = await handle.downloadFile(remote, {
          onProgress: (done, total) => {
            received = done;
            progress.update(done, total);
          },
        });
        const path = local === undefined ? basename(remote) : local !== '-' && isDirectory(local) ? join(local, basename(remote)) : local;
        await pipeline(stream, path === '-' ? process.stdout : createWriteStream(path));
        progress.finish(received);
      }),
    );
}

import { createWriteStream } from 'node:fs';
import { basename, join } from 'node:path';
import { statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Sandbox } from '@corral/sdk';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import { progressReporter } from './formatting.js';

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** `corral sandbox download ID REMOTE LOCAL`: streams a file out ("-" writes to stdout). */
export async function downloadFile(id: string, remote: string, local: string | undefined, _options: object, globals: GlobalOptions): Promise<void> {
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
}

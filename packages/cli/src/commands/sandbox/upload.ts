import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Sandbox } from '@corral/sdk';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import { progressReporter } from './formatting.js';

/** `corral sandbox upload ID LOCAL REMOTE`: streams a file in (REMOTE ending in / gets LOCAL's name). */
export async function uploadFile(id: string, local: string, remote: string, _options: object, globals: GlobalOptions): Promise<void> {
  const target = remote.endsWith('/') ? `${remote}${basename(local)}` : remote;
  const total = local === '-' ? undefined : statSync(local).size;
  const source = local === '-' ? process.stdin : createReadStream(local);
  const handle = await Sandbox.connect(clientFor(globals), id);
  const progress = progressReporter(`upload ${target}`);
  const result = await handle.uploadFile(target, source, { onProgress: (done) => progress.update(done, total) });
  progress.finish(result.size);
  if (globals.output === 'json') process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

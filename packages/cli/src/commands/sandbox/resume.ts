import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

/** `corral sandbox resume ID`: a paused sandbox continues where it stopped, its timers with the time they had left; prints its id and status. Idempotent. */
export async function resumeSandbox(id: string, _options: object, globals: GlobalOptions): Promise<void> {
  const s = await clientFor(globals).sandboxes.resume(id);
  if (globals.output === 'json') printResult('json', s, [], []);
  else process.stdout.write(`${s.id} ${s.status}\n`);
}

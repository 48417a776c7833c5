import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

/** `corral sandbox pause ID`: freezes every process of a RUNNING sandbox (memory kept; its timeout and idle timers stop); prints its id and status. Idempotent. */
export async function pauseSandbox(id: string, _options: object, globals: GlobalOptions): Promise<void> {
  const s = await clientFor(globals).sandboxes.pause(id);
  if (globals.output === 'json') printResult('json', s, [], []);
  else process.stdout.write(`${s.id} ${s.status}\n`);
}

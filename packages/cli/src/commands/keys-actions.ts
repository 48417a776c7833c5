import { printResult } from '../output.js';
import type { GlobalOptions } from '../run.js';
import { clientFor } from '../sdk-client.js';

/** `corral keys create`: prints the key (once), or the whole answer with `-o json`. */
export async function createKey(options: { name: string; user?: string }, globals: GlobalOptions): Promise<void> {
  const created = await clientFor(globals).keys.create({ name: options.name, ...(options.user ? { user_id: options.user } : {}) });
  if (globals.output === 'json') printResult('json', created, [], []);
  else process.stdout.write(`${created.key}\n`);
  process.stderr.write(`Key ${created.id} created for user ${created.user_id}. It is not shown again.\n`);
}

/** `corral keys list [--user ID]`. */
export async function listKeys(options: { user?: string }, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).keys.list(options.user || undefined);
  printResult(globals.output, result, result.keys, ['id', 'name', 'prefix', 'user_id', 'created_at', 'revoked_at']);
}

/** `corral keys revoke ID`. */
export async function revokeKey(keyId: string, _options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).keys.revoke(keyId);
  if (globals.output === 'json') printResult('json', result, [], []);
  else process.stdout.write(`${result.message}\n`);
}

import { printResult } from '../output.js';
import type { GlobalOptions } from '../run.js';
import { clientFor } from '../sdk-client.js';

/** `corral users create NAME [--email E] [--admin] [--key]`: with `--key`, also an API key for them, printed once. */
export async function createUser(name: string, options: { email?: string; admin: boolean; key: boolean }, globals: GlobalOptions): Promise<void> {
  const client = clientFor(globals);
  const user = await client.users.create({ name, is_admin: options.admin, ...(options.email ? { email: options.email } : {}) });
  const key = options.key ? (await client.keys.create({ user_id: user.id, name: `${name} key` })).key : undefined;
  if (globals.output === 'json') printResult('json', { user, ...(key ? { key } : {}) }, [], []);
  else {
    printResult('table', user, [user], ['id', 'name', 'email', 'is_admin']);
    if (key) process.stdout.write(`\nAPI key (shown once): ${key}\n`);
  }
}

/** `corral users list`. */
export async function listUsers(_options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).users.list();
  printResult(globals.output, result, result.users, ['id', 'name', 'email', 'is_admin', 'created_at']);
}

/** `corral users delete ID`: the user and their keys. */
export async function deleteUser(userId: string, _options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).users.delete(userId);
  if (globals.output === 'json') printResult('json', result, [], []);
  else process.stdout.write(`${result.message}\n`);
}

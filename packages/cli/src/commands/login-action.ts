import { CorralClient } from '@corral/sdk';
import { readConfigFile, writeConfigFile } from '../cli-config.js';
import type { GlobalOptions } from '../run.js';

/** `corral login`: checks the URL and key with `GET /me`, then stores them (mode 0600). */
export async function login(_options: object, globals: GlobalOptions): Promise<void> {
  const stored = readConfigFile();
  const apiUrl = globals.apiUrl ?? process.env.CORRAL_API_URL ?? stored.api_url ?? 'http://127.0.0.1:8080';
  const apiKey = globals.apiKey ?? process.env.CORRAL_API_KEY ?? process.env.PRIME_API_KEY ?? stored.api_key;
  if (!apiKey) throw new Error('give the key: `corral login --api-url <url> --api-key <key>` (or set CORRAL_API_KEY)');
  const client = new CorralClient({ apiUrl, apiKey, env: {} });
  const me = await client.me();
  const path = writeConfigFile({ api_url: client.options.apiUrl, api_key: apiKey });
  process.stderr.write(`Logged in to ${client.options.apiUrl} as ${me.user.name}${me.user.is_admin ? ' (admin)' : ''}; saved to ${path}\n`);
}

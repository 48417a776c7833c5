import { CorralClient } from '@corral/sdk';
import { resolveTarget } from './cli-config.js';
import type { GlobalOptions } from './run.js';

/**
 * An SDK client for the target the global options, environment and `corral login` name. Only
 * command implementations import this module, so the SDK loads when a command runs, not at start-up.
 */
export function clientFor(globals: GlobalOptions): CorralClient {
  const target = resolveTarget(globals);
  return new CorralClient({ apiUrl: target.baseUrl, ...(target.apiKey !== undefined ? { apiKey: target.apiKey } : {}) });
}

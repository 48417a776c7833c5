import type { Command } from 'commander';
import { CorralError } from '@corral/sdk';
import { CliApiError } from './api-client.js';

/** Options every command accepts. */
export interface GlobalOptions {
  apiUrl?: string;
  apiKey?: string;
  output: 'table' | 'json';
}

/**
 * Wraps a command action: hands it the global options, prints errors as one line on stderr and
 * exits non-zero (2 for usage and client errors, 1 for everything else).
 */
export function run<A extends unknown[]>(action: (...args: [...A, GlobalOptions]) => Promise<void>) {
  return async (...args: unknown[]): Promise<void> => {
    const command = args[args.length - 1] as Command;
    const globals = command.optsWithGlobals<GlobalOptions>();
    const positional = args.slice(0, -2) as unknown[];
    const options = args[args.length - 2];
    try {
      await action(...([...positional, options, globals] as unknown as [...A, GlobalOptions]));
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      process.stderr.write(`corral: ${message}\n`);
      const status = error instanceof CliApiError || error instanceof CorralError ? error.status : 0;
      process.exitCode = status >= 400 && status < 500 ? 2 : 1;
    }
  };
}

import type { Command } from 'commander';

/** Options every command accepts. */
export interface GlobalOptions {
  apiUrl?: string;
  apiKey?: string;
  output: 'table' | 'json';
}

/** A command's implementation: its positional arguments, its own options, then the global options. */
export type CommandAction<A extends unknown[]> = (...args: [...A, GlobalOptions]) => Promise<void>;

/** The HTTP status an error carries (the SDK's `CorralError.status`), or 0. */
async function statusOf(error: unknown): Promise<number> {
  if (!(error instanceof Error)) return 0;
  // Imported here, not at the top: only a failed command pays for loading the SDK, and a command
  // that failed through the SDK has loaded it already.
  const { CorralError } = await import('@corral/sdk');
  return error instanceof CorralError ? error.status : 0;
}

/**
 * Wraps a command action: hands it the global options, prints errors as one line on stderr and
 * exits non-zero (2 for usage and client errors, 1 for everything else).
 */
export function run<A extends unknown[]>(action: CommandAction<A>) {
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
      const status = await statusOf(error);
      process.exitCode = status >= 400 && status < 500 ? 2 : 1;
    }
  };
}

/**
 * {@link run} for an implementation that lives in another module: `load` imports it when the
 * command runs, so registering the command (its name, options and help) loads none of its code.
 *
 * @example
 * ```ts
 * sandbox.command('list').option('-a, --all').action(lazy(async () => (await import('./sandbox/list.js')).listSandboxes));
 * ```
 */
export function lazy<A extends unknown[]>(load: () => Promise<CommandAction<A>>) {
  return run<A>(async (...args) => (await load())(...args));
}

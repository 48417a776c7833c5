import type { Command } from 'commander';

/** The flags of `corral serve`. */
export interface ServeOptions {
  host?: string;
  port?: string;
  dataDir?: string;
  runtime?: string;
  config?: string;
}

/**
 * `corral serve`: runs the API server until SIGTERM or SIGINT (`serve-action.ts`, which loads the
 * server package when it runs).
 */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('Run the Corral server (control plane and gateway)')
    .option('--host <host>', 'address to listen on (CORRAL_HOST)')
    .option('--port <port>', 'port to listen on (CORRAL_PORT)')
    .option('--data-dir <dir>', 'state directory (CORRAL_DATA_DIR)')
    .option('--runtime <driver>', 'runtime driver: docker or none (CORRAL_RUNTIME)')
    .option('--config <file>', 'JSON config file; its keys are the settings below (CORRAL_CONFIG)')
    .action(async (options: ServeOptions) => (await import('./serve-action.js')).serve(options));
}

/**
 * Adds the server's settings table to `corral serve --help` (and `corral help serve`). The table
 * comes from the server package, which registration does not load, and commander prints help
 * synchronously: so this runs before parsing, and only when the arguments name `serve`.
 */
export async function addServeSettingsHelp(program: Command, args: readonly string[]): Promise<void> {
  const serve = program.commands.find((c) => c.name() === 'serve');
  if (!serve || !args.includes('serve')) return;
  const { describeSettings } = await import('@corral/server');
  serve.addHelpText('after', `\nSettings (environment variables; a config file may use the same names):\n${describeSettings()}\n`);
}

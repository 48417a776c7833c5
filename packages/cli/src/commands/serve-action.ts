import { type CorralConfig, createCorralServer, loadConfig } from '@corral/server';
import type { ServeOptions } from './serve.js';

/**
 * `corral serve`: runs the API server until SIGTERM or SIGINT, then shuts down cleanly and exits.
 * The returned promise never settles: the command ends only through those signals.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const env = { ...process.env };
  if (options.host) env.CORRAL_HOST = options.host;
  if (options.port) env.CORRAL_PORT = options.port;
  if (options.dataDir) env.CORRAL_DATA_DIR = options.dataDir;
  if (options.runtime) env.CORRAL_RUNTIME = options.runtime;
  let config: CorralConfig;
  try {
    config = loadConfig({ env, configFile: options.config ?? null });
  } catch (error) {
    process.stderr.write(`corral serve: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const server = await createCorralServer(config);
  const url = await server.listen();
  if (server.createdAdminKey) {
    process.stderr.write(
      `\nCreated the first admin API key. It is shown only this once; keep it:\n\n    ${server.createdAdminKey}\n\n` +
        `Use it with: export CORRAL_API_KEY=${server.createdAdminKey}\n\n`,
    );
  }
  server.log.info({ url, runtime: config.runtime, store: server.store.kind, dataDir: config.dataDir }, 'corral listening');
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    server.log.info({ signal }, 'shutting down');
    server
      .close()
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        server.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await new Promise<never>(() => undefined);
}

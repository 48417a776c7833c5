import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import type { CorralConfig } from './config.js';
import { buildApp } from './http/app.js';
import { Reconciler } from './reconciler/reconciler.js';
import { createRuntime } from './runtime/create-runtime.js';
import type { SandboxRuntime } from './runtime/runtime.js';
import { ActivityTracker } from './services/activity-tracker.js';
import { AuthService } from './services/auth-service.js';
import { CreateHold } from './services/create-hold.js';
import { GatewayTokens } from './services/gateway-tokens.js';
import { RateLimiter } from './services/rate-limiter.js';
import { RegistryCredentialsService } from './services/registry-credentials-service.js';
import { SandboxLifecycle } from './services/sandbox-lifecycle.js';
import { SandboxService } from './services/sandbox-service.js';
import { openStore } from './store/open-store.js';
import type { Store } from './store/store.js';

/** A running Corral server and the parts tests reach into. */
export interface CorralServer {
  readonly config: CorralConfig;
  readonly app: FastifyInstance;
  readonly store: Store;
  readonly runtime: SandboxRuntime | null;
  readonly reconciler: Reconciler;
  readonly lifecycle: SandboxLifecycle;
  readonly log: Logger;
  /** The admin key created on first start (printed once), if this start created one. */
  readonly createdAdminKey: string | null;
  /** Starts listening; resolves with the base URL. */
  listen(): Promise<string>;
  /** Stops accepting requests, finishes in-flight work and closes the store. Sandboxes keep running. */
  close(): Promise<void>;
}

/** The key that signs gateway tokens: configured, or generated once and kept in the data dir. */
function gatewaySecret(config: CorralConfig): string {
  if (config.gatewaySecret) return config.gatewaySecret;
  const file = join(config.dataDir, 'gateway-secret');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    const secret = randomBytes(32).toString('base64url');
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return readFileSync(file, 'utf8').trim();
  }
}

/**
 * Wires the store, runtime driver, services, reconciler and HTTP app together, runs startup
 * recovery (one reconcile pass) and returns the server ready to listen.
 */
export async function createCorralServer(
  config: CorralConfig,
  options: { logger?: Logger; /** Used instead of the driver `config.runtime` names (tests wrap drivers with it). */ runtime?: SandboxRuntime } = {},
): Promise<CorralServer> {
  const log = options.logger ?? pino({ level: config.logLevel, base: { service: 'corral' } });
  const store = await openStore(
    config.databaseUrl ? { kind: 'postgres', url: config.databaseUrl } : { kind: 'sqlite', path: join(config.dataDir, 'corral.db') },
  );
  let runtime: SandboxRuntime | null = null;
  try {
    runtime = options.runtime ?? (await createRuntime(config));
  } catch (error) {
    await store.close();
    throw error;
  }
  const auth = new AuthService(store);
  const { createdKey } = await auth.bootstrap(config.bootstrapApiKey);
  const lifecycle = new SandboxLifecycle(store, runtime, config, log);
  const tokens = new GatewayTokens(gatewaySecret(config), config.gatewayTokenTtlSeconds);
  const activity = new ActivityTracker(store, log);
  const registryCredentials = new RegistryCredentialsService(store);
  const sandboxes = new SandboxService(store, lifecycle, tokens, config, registryCredentials);
  const reconciler = new Reconciler(store, lifecycle, config.reconcileIntervalMs, log, config.terminatedRetentionHours * 3_600_000);
  let ready = false;
  const app = await buildApp(
    { config, auth, sandboxes, createHold: new CreateHold(store, lifecycle, config.createWaitMs), registryCredentials, rateLimiter: new RateLimiter(config.rateLimits), gateway: { store, runtime, tokens, activity }, isReady: () => ready },
    log,
  );
  await reconciler.reconcile();
  reconciler.start();
  ready = true;

  let closed = false;
  return {
    config,
    app,
    store,
    runtime,
    reconciler,
    lifecycle,
    log,
    createdAdminKey: createdKey,
    async listen() {
      return app.listen({ host: config.host, port: config.port });
    },
    async close() {
      if (closed) return;
      closed = true;
      ready = false;
      await reconciler.stop();
      await app.close();
      await activity.flush();
      await lifecycle.close();
      await runtime?.close();
      await store.close();
    },
  };
}

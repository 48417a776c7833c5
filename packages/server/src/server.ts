import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import type { CorralConfig } from './config.js';
import { buildApp } from './http/app.js';
import { Reconciler } from './reconciler/reconciler.js';
import { createRuntime } from './runtime/create-runtime.js';
import type { RuntimeIsolation, SandboxRuntime } from './runtime/runtime.js';
import { AccessChecker } from './services/access-checker.js';
import { AccessEvents } from './services/access-events.js';
import { ActivityTracker } from './services/activity-tracker.js';
import { AuthService } from './services/auth-service.js';
import { CreateHold } from './services/create-hold.js';
import { EgressService } from './services/egress-service.js';
import { GatewayTokens } from './services/gateway-tokens.js';
import { QuotaService } from './services/quota-service.js';
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
    const secret = readFileSync(file, 'utf8').trim();
    chmodSync(file, 0o600);
    return secret;
  } catch {
    const secret = randomBytes(32).toString('base64url');
    writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return readFileSync(file, 'utf8').trim();
  }
}

/**
 * Creates the data directory 0700 (parents too, when missing) and makes an existing one 0700, before
 * anything is written into it: it holds the store, the gateway key and sandbox state.
 */
export function prepareDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
}

/** The one startup line about isolation: what sandboxes get, and why not when root in a sandbox is host root. */
function logIsolation(log: Logger, runtime: string, isolation: RuntimeIsolation): void {
  const summary = `sandbox isolation (${runtime}): user namespace ${isolation.userNamespace ? 'on' : 'OFF'}, seccomp ${isolation.seccomp ? 'on' : 'OFF'}, cgroup v${isolation.cgroupVersion}, cgroup namespace ${isolation.cgroupNamespace ? 'on' : 'OFF'}`;
  if (isolation.userNamespace) log.info({ isolation }, summary);
  else log.warn({ isolation }, `${summary}: root in a sandbox is host root (${isolation.reason ?? 'no reason given'})`);
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
  prepareDataDir(config.dataDir);
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
  if (runtime) logIsolation(log, runtime.name, runtime.isolation());
  const accessEvents = new AccessEvents((error, change) => log.warn({ err: error, change }, 'acting on an access change failed'));
  const access = new AccessChecker(store);
  // First listener: every later one (network, sandboxes) re-checks against the store, not the cache.
  accessEvents.subscribe(() => access.invalidate());
  const auth = new AuthService(store, accessEvents);
  const { createdKey } = await auth.bootstrap(config.bootstrapApiKey);
  const lifecycle = new SandboxLifecycle(store, runtime, config, log);
  const tokens = new GatewayTokens(gatewaySecret(config), config.gatewayTokenTtlSeconds);
  const activity = new ActivityTracker(store, log);
  const registryCredentials = new RegistryCredentialsService(store);
  const quotas = new QuotaService(store, config);
  const sandboxes = new SandboxService(store, lifecycle, tokens, config, registryCredentials, quotas);
  accessEvents.subscribe(async (change) => {
    if (change.kind === 'userDeleted') await sandboxes.terminateOwnedBy(change.userId);
  });
  const reconciler = new Reconciler(store, lifecycle, config.reconcileIntervalMs, log, { retentionMs: config.terminatedRetentionHours * 3_600_000 });
  let ready = false;
  const app = await buildApp(
    { config, auth, sandboxes, egress: new EgressService(store, sandboxes, lifecycle), quotas, createHold: new CreateHold(store, lifecycle, config.createWaitMs), registryCredentials, rateLimiter: new RateLimiter(config.rateLimits), gateway: { store, runtime, tokens, access, accessEvents, activity }, isReady: () => ready },
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

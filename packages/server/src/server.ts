import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import type { CorralConfig } from './config.js';
import { trackUnusedConnections } from './http/unused-connections.js';
import { buildApp } from './http/app.js';
import type { Reconciler } from './services/reconciler.js';
import { createRuntime } from './runtime/create-runtime.js';
import type { RuntimeIsolation, SandboxRuntime } from './runtime/runtime.js';
import type { SandboxLifecycle } from './services/sandbox-lifecycle.js';
import { openStore } from './store/open-store.js';
import type { Store } from './store/store.js';
import { wireServer } from './wiring.js';
import { loadOrCreateSecretFile } from './util/secret-file.js';

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

/**
 * The key that signs gateway tokens: configured, or generated once and kept in the data dir
 * (replicas starting at once on one data dir all get the one key: `loadOrCreateSecretFile`).
 */
export function gatewaySecret(config: Pick<CorralConfig, 'gatewaySecret' | 'dataDir'>): string {
  if (config.gatewaySecret) return config.gatewaySecret;
  return loadOrCreateSecretFile(join(config.dataDir, 'gateway-secret'), () => `${randomBytes(32).toString('base64url')}\n`).content.trim();
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
 * Opens the store and the runtime driver, has `wireServer` build the services on them, builds the
 * HTTP app, runs startup recovery (one reconcile pass) and returns the server ready to listen.
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
  const { services, auth, lifecycle, checkpoints, reconciler, presence, activity, events, webhooks, liveGrants, setReady } = wireServer(config, store, runtime, log, gatewaySecret(config));
  try {
    // Refuses a second live replica of the deployment on a driver that cannot share sandboxes.
    await presence.start();
  } catch (error) {
    liveGrants.close();
    await lifecycle.close();
    await events.close();
    await runtime?.close();
    await store.close();
    throw error;
  }
  const { createdKey } = await auth.bootstrap(config.bootstrapApiKey);
  const app = await buildApp(services, log);
  const destroyUnusedConnections = trackUnusedConnections(app.server);
  await reconciler.reconcile();
  const interrupted = await services.images.recover(await presence.liveReplicas());
  if (interrupted > 0) log.warn({ builds: interrupted }, 'image builds interrupted by a restart were marked FAILED');
  reconciler.start();
  webhooks.start(events);
  setReady(true);

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
      setReady(false);
      await reconciler.stop();
      const appClosed = app.close();
      destroyUnusedConnections();
      await appClosed;
      liveGrants.close();
      await activity.flush();
      await lifecycle.close();
      // Captures in flight finish (DURABLE or FAILED) while the driver is still open.
      await checkpoints.close();
      // Running builds finish (or hit their deadline) before the driver and the store go.
      await services.images.close();
      // After provisioning settled: the heartbeat goes, so other replicas take over at once.
      await presence.stop();
      await events.close();
      // After the events: their last batch becomes deliveries (attempted by the next start if not now).
      await webhooks.close();
      await runtime?.close();
      await store.close();
    },
  };
}

import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import type { CorralConfig } from './config.js';
import type { GatewayDeps } from './gateway/gateway-deps.js';
import { LiveGrants } from './gateway/live-grants.js';
import type { AppServices } from './http/app-services.js';
import { NetworkService } from './network/network-service.js';
import { SshGateway } from './network/ssh-gateway.js';
import { TunnelHub } from './network/tunnel-hub.js';
import { Reconciler } from './services/reconciler.js';
import type { SandboxRuntime } from './runtime/runtime.js';
import { AccessChecker } from './services/access-checker.js';
import { AccessEvents } from './services/access-events.js';
import { ActivityTracker } from './services/activity-tracker.js';
import { AuthService } from './services/auth-service.js';
import { CheckpointService } from './services/checkpoint-service.js';
import { CorralMetrics } from './services/corral-metrics.js';
import { ForkService } from './services/fork-service.js';
import { CreateHold } from './services/create-hold.js';
import { EgressService } from './services/egress-service.js';
import { GatewayTokens } from './services/gateway-tokens.js';
import { QuotaService } from './services/quota-service.js';
import { RateLimiter } from './services/rate-limiter.js';
import { ReplicaPresence } from './services/replica-presence.js';
import { RegistryCredentialsService } from './services/registry-credentials-service.js';
import { SandboxAccess } from './services/sandbox-access.js';
import { SandboxLifecycle } from './services/sandbox-lifecycle.js';
import { SandboxEvents } from './services/sandbox-events.js';
import { SandboxService } from './services/sandbox-service.js';
import { ImageService } from './services/image-service.js';
import { WebhookDelivery } from './services/webhook-delivery.js';
import { WebhookService } from './services/webhook-service.js';
import type { Store } from './store/store.js';

/** Every long-lived part of a server, built and connected; `server.ts` starts and stops them. */
export interface ServerWiring {
  /** What the HTTP app (and, through it, the gateway and the network routes) calls into. */
  services: AppServices;
  auth: AuthService;
  lifecycle: SandboxLifecycle;
  /** Checkpoint captures run in the background; closed (waited for) before the runtime. */
  checkpoints: CheckpointService;
  reconciler: Reconciler;
  /** This replica's heartbeat and leader lease; started before the first reconcile, stopped last. */
  presence: ReplicaPresence;
  activity: ActivityTracker;
  /** The sandbox event log; closed (its buffer written) before the store. */
  events: SandboxEvents;
  /** Webhook delivery; started with the reconciler, closed after `events` (whose last events it delivers). */
  webhooks: WebhookDelivery;
  /** The gateway's open work, cut when access is taken away; started here, closed by the caller. */
  liveGrants: LiveGrants;
  /** Sets what `/healthz` reports: true once startup recovery has finished. */
  setReady(ready: boolean): void;
}

/**
 * The one place that constructs the server's services and hands them to each other, the routes
 * and the gateway: the store and the runtime driver come in, nothing is looked up elsewhere.
 * Nothing here does I/O; `server.ts` runs the startup steps (admin key, recovery) and owns the
 * shutdown order.
 */
export function wireServer(config: CorralConfig, store: Store, runtime: SandboxRuntime | null, log: Logger, gatewaySecret: string): ServerWiring {
  const accessEvents = new AccessEvents((error, change) => log.warn({ err: error, change }, 'acting on an access change failed'));
  const access = new AccessChecker(store);
  // First listener: every later one (network, sandboxes, open gateway work) re-checks against the store, not the cache.
  accessEvents.subscribe(() => access.invalidate());
  const auth = new AuthService(store, accessEvents);
  const metrics = new CorralMetrics();
  const events = new SandboxEvents(store, log, metrics);
  const webhookDelivery = new WebhookDelivery(
    store,
    {
      replicaId: config.replicaId,
      allowPrivate: config.webhookAllowPrivate,
      timeoutMs: config.webhookTimeoutMs,
      maxAttempts: config.webhookMaxAttempts,
      retryBaseMs: config.webhookRetryBaseMs,
      retentionMs: config.terminatedRetentionHours * 3_600_000,
    },
    log,
    metrics,
  );
  const lifecycle = new SandboxLifecycle(store, runtime, config, log, { metrics, events });
  const tokens = new GatewayTokens(gatewaySecret, config.gatewayTokenTtlSeconds);
  const activity = new ActivityTracker(store, log);
  const registryCredentials = new RegistryCredentialsService(store);
  const quotas = new QuotaService(store, config);
  const images = new ImageService(store, runtime, config, registryCredentials, createHmac('sha256', gatewaySecret).update('image-context-uploads').digest('hex'), log, metrics);
  const sandboxes = new SandboxService(store, lifecycle, tokens, config, registryCredentials, quotas, images);
  const checkpoints = new CheckpointService(store, runtime, quotas, config, log, { metrics, events });
  const forks = new ForkService(sandboxes, checkpoints);
  const webhooks = new WebhookService(store, webhookDelivery, { allowPrivate: config.webhookAllowPrivate });
  accessEvents.subscribe(async (change) => {
    if (change.kind === 'userDeleted') await sandboxes.terminateOwnedBy(change.userId);
  });
  accessEvents.subscribe(async (change) => {
    if (change.kind === 'userDeleted') await webhooks.forgetUser(change.userId);
  });
  const presence = new ReplicaPresence(
    store,
    {
      instanceId: config.instanceId,
      replicaId: config.replicaId,
      leaseMs: config.replicaLeaseMs,
      // Without a runtime nothing runs anywhere: nothing to keep apart.
      sharedRuntime: runtime ? runtime.capabilities().sharedRuntime === true : true,
      runtimeName: runtime?.name ?? 'none',
    },
    log,
  );
  const reconciler = new Reconciler(store, lifecycle, config.reconcileIntervalMs, log, { retentionMs: config.terminatedRetentionHours * 3_600_000, presence, metrics, checkpoints });

  const sandboxAccess = new SandboxAccess({ store, runtime, tokens, access, activity, instanceId: config.instanceId });
  const ssh = new SshGateway({ config, store, sandboxAccess, log });
  const tunnels = new TunnelHub({ store, auth, access, log });
  const network = new NetworkService({ config, store, sandboxAccess, tokens, accessEvents, ssh, tunnels, log, events });
  // Access taken away (a revoked key, a deleted user, a lost team role) cuts the gateway's open
  // work: at once for changes made through this process, within seconds for other replicas'.
  const liveGrants = new LiveGrants({
    access: sandboxAccess,
    subscribe: (listener) => accessEvents.subscribe(listener),
    onError: (error) => log.warn({ err: error }, 'gateway: re-checking open grants failed'),
  });
  liveGrants.start();
  const gateway: GatewayDeps = { config, sandboxAccess, liveGrants, sshKeys: ssh, metrics, events };
  metrics.sources.sandboxes = () => sandboxes.countActive();
  metrics.sources.admission = () => ({ queued: lifecycle.provisioningQueued, provisioning: lifecycle.provisioningInFlight });
  metrics.sources.warmPool = () => runtime?.warmPool?.();
  metrics.sources.checkpoints = () => checkpoints.countByState();

  let ready = false;
  const services: AppServices = {
    config,
    auth,
    sandboxes,
    checkpoints,
    forks,
    egress: new EgressService(store, sandboxes, lifecycle),
    quotas,
    createHold: new CreateHold(store, lifecycle, config.createWaitMs),
    registryCredentials,
    images,
    rateLimiter: new RateLimiter(config.rateLimits),
    network,
    gateway,
    metrics,
    events,
    webhooks,
    isReady: () => ready,
    isolation: () => runtime?.isolation() ?? null,
  };
  return {
    services,
    auth,
    lifecycle,
    checkpoints,
    reconciler,
    presence,
    activity,
    events,
    webhooks: webhookDelivery,
    liveGrants,
    setReady(value) {
      ready = value;
    },
  };
}

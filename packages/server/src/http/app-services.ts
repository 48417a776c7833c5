import type { FastifyRequest } from 'fastify';
import type { CorralConfig } from '../config.js';
import { ApiError } from '../errors/api-error.js';
import type { GatewayDeps } from '../gateway/gateway-deps.js';
import type { NetworkService } from '../network/network-service.js';
import type { RuntimeIsolation } from '../runtime/runtime.js';
import type { SandboxEventActor } from '../records/event-records.js';
import type { AuthService, Principal } from '../services/auth-service.js';
import type { CheckpointService } from '../services/checkpoint-service.js';
import type { CorralMetrics } from '../services/corral-metrics.js';
import type { ForkService } from '../services/fork-service.js';
import type { CreateHold } from '../services/create-hold.js';
import type { SandboxEvents } from '../services/sandbox-events.js';
import type { EgressService } from '../services/egress-service.js';
import type { RateLimitName, RateLimiter } from '../services/rate-limiter.js';
import type { ImageService } from '../services/image-service.js';
import type { QuotaService } from '../services/quota-service.js';
import type { RegistryCredentialsService } from '../services/registry-credentials-service.js';
import type { SandboxService } from '../services/sandbox-service.js';
import type { WebhookService } from '../services/webhook-service.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; set on every route that is not public. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** The route needs no API key. */
    public?: boolean;
    /** The rate limit this route counts against. */
    rateLimit?: RateLimitName;
  }
}

/** What the HTTP layer calls into; `wiring.ts` builds it. */
export interface AppServices {
  config: CorralConfig;
  auth: AuthService;
  sandboxes: SandboxService;
  /** Checkpoints of sandboxes (take, read, list, delete). */
  checkpoints: CheckpointService;
  /** Forks of checkpoints and of running sandboxes. */
  forks: ForkService;
  /** Sandboxes' egress policies and logs. */
  egress: EgressService;
  /** Per-user and per-team quotas over active sandboxes. */
  quotas: QuotaService;
  /** Holds `POST /sandbox` answers while their sandbox starts. */
  createHold: CreateHold;
  registryCredentials: RegistryCredentialsService;
  /** Dockerfile builds and built images. */
  images: ImageService;
  rateLimiter: RateLimiter;
  /** Port exposures, SSH sessions and reverse tunnels; started on the app's HTTP server once it is ready. */
  network: NetworkService;
  /** What the data-plane gateway under `/gateway` needs. */
  gateway: GatewayDeps;
  /** The server's Prometheus metrics (`GET /metrics`, the API latency hook). */
  metrics: CorralMetrics;
  /** Sandbox events: pages and live streams of `GET /sandbox/{id}/events`. */
  events: SandboxEvents;
  /** Webhook endpoints and their deliveries (`/webhooks`). */
  webhooks: WebhookService;
  /** True once startup recovery has finished; `/healthz` answers 503 until then. */
  isReady: () => boolean;
  /** The isolation sandboxes get (the driver's report); null without a driver. */
  isolation: () => RuntimeIsolation | null;
}

/** The caller as the actor of a sandbox event: the user and the API key they called with. */
export function actorOfPrincipal(principal: Principal): SandboxEventActor {
  return { userId: principal.user.id, keyId: principal.apiKeyId };
}

/** The caller of an authenticated route. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new ApiError('UNAUTHORIZED', 'Missing API key: send "Authorization: Bearer <key>"');
  return request.principal;
}

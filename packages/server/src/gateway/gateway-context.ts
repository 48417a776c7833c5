import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CorralConfig } from '../config.js';
import { RUNTIME_FAILURES } from '../errors/error-codes.js';
import { RuntimeError } from '../runtime/runtime.js';
import type { CorralMetrics } from '../services/corral-metrics.js';
import type { SandboxAccess } from '../services/sandbox-access.js';
import type { SandboxEvents } from '../services/sandbox-events.js';
import { GatewayError, sandboxNotFound } from '../errors/gateway-error.js';
import type { GatewayTarget } from './gateway-target.js';
import type { SandboxEventActor } from '../records/event-records.js';
import type { FairScheduler } from './fair-scheduler.js';
import type { OutputBudget } from './output-budget.js';

/** What every gateway route shares. */
export interface GatewayContext {
  /** Resolves sandboxes and records their activity (idle timeouts). */
  access: SandboxAccess;
  config: CorralConfig;
  /** Slots of exec, upload, download and read-file: server-wide, per user and per sandbox, queued fairly. */
  slots: FairScheduler;
  /** Slots of long-lived streaming sessions (WebSocket `stream`, Connect `Start`), a pool of their own. */
  sessions: FairScheduler;
  /** Exec output held in memory across every in-flight exec. */
  outputBudget: OutputBudget;
  /** Exec and transfer latency and bytes. */
  metrics: CorralMetrics;
  /** Where execs, transfers and streaming sessions are recorded as sandbox events. */
  events: SandboxEvents;
}

/** Who acts through a gateway request, for sandbox events: the token's caller and the key it was issued through. */
export function actorOf(target: GatewayTarget): SandboxEventActor {
  return { userId: target.grant.callerId, keyId: target.grant.keyId };
}

/** Route parameters of every gateway route. */
export interface GatewayParams {
  user_ns: string;
  job_id: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The checked sandbox of a gateway request; set by the gateway's onRequest hook. */
    gatewayTarget: GatewayTarget | null;
  }
}

/** The request's checked sandbox. */
export function targetOf(request: FastifyRequest): GatewayTarget {
  if (!request.gatewayTarget) throw new GatewayError('unauthorized', 'Missing gateway token');
  return request.gatewayTarget;
}

/**
 * An AbortSignal that fires when the client goes away before the response is sent, so work done
 * for it (a process, a queue slot) can stop.
 */
export function clientGone(request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const onClose = (): void => {
    if (!reply.raw.writableEnded) controller.abort(new Error('client disconnected'));
  };
  reply.raw.once('close', onClose);
  request.raw.once('error', onClose);
  return controller.signal;
}

/**
 * Maps a runtime failure to a gateway error through the registry (`RUNTIME_FAILURES`): a sandbox
 * the driver no longer has is a 502 `sandbox_not_found`, a paused one a 409 `sandbox_not_ready`,
 * anything else a 502 `gateway_error`.
 */
export function runtimeFailure(target: GatewayTarget, error: unknown): GatewayError {
  if (error instanceof GatewayError) return error;
  if (error instanceof RuntimeError && RUNTIME_FAILURES[error.kind].gateway === 'sandbox_not_found') {
    return sandboxNotFound(target.sandboxId, `Sandbox ${target.sandboxId} is no longer running`);
  }
  if (error instanceof RuntimeError && RUNTIME_FAILURES[error.kind].gateway === 'sandbox_not_ready') {
    // Paused between the gateway's status check and the driver call.
    return new GatewayError('sandbox_not_ready', `Sandbox ${target.sandboxId} is PAUSED, not RUNNING`, { sandboxId: target.sandboxId, status: 'PAUSED' });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new GatewayError('gateway_error', `Failed to route request to sandbox: ${message}`);
}

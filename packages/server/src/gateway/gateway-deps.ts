import type { CorralConfig } from '../config.js';
import type { CorralMetrics } from '../services/corral-metrics.js';
import type { SandboxAccess } from '../services/sandbox-access.js';
import type { SandboxEvents } from '../services/sandbox-events.js';
import type { LiveGrants } from './live-grants.js';

/** Admits a public key for one SSH session of a sandbox (the gateway's `authorize` route). */
export interface SshKeyAuthorizer {
  /** Throws a `GatewayError` (`bad_request`, `ssh_session_not_found`) to answer with. */
  authorize(sandboxId: string, body: unknown): Promise<{ success: true; session_id: string; expires_at: string; message: string }>;
}

/** What the data-plane gateway needs; `wiring.ts` builds it. */
export interface GatewayDeps {
  config: CorralConfig;
  /** Resolves a token's sandbox, checks it runs, hands back the runtime handle, records activity. */
  sandboxAccess: SandboxAccess;
  /** The gateway's open requests and sessions, cut when the access they were opened with is taken away. */
  liveGrants: LiveGrants;
  /** SSH key admission; null when this server serves no SSH sessions. */
  sshKeys: SshKeyAuthorizer | null;
  /** Exec and transfer latency and bytes, queue depth and wait. */
  metrics: CorralMetrics;
  /** Where execs, transfers and streaming sessions are recorded as sandbox events. */
  events: SandboxEvents;
}

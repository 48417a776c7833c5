/**
 * A webhook endpoint (`/api/v1/webhooks`, docs/operations.md, **Webhooks**): where the events of
 * its owner's sandboxes (a user's own, or a team's) are POSTed, signed with its secret.
 */
export interface WebhookEndpointRecord {
  id: string;
  /** The user who registered it; with `teamId` null it gets the events of this user's own sandboxes. */
  userId: string;
  /** A team's endpoint gets the events of the team's sandboxes (registered by a team admin). */
  teamId: string | null;
  url: string;
  /** Sandbox event types it gets, or `*` for all. */
  eventTypes: string[];
  /** The signing key (`whsec_…`); shown once, at creation. */
  secret: string;
  enabled: boolean;
  createdAt: string;
}

/** Where a delivery is: waiting for an attempt, held by a replica attempting it, done, or given up on. */
export type WebhookDeliveryStatus = 'pending' | 'delivering' | 'delivered' | 'failed';

/** One attempt of a delivery: when, how long, and the receiver's status code or the error. */
export interface WebhookAttemptRecord {
  at: string;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
}

/** One event to one endpoint, with every attempt made. */
export interface WebhookDeliveryRecord {
  id: string;
  endpointId: string;
  /** The sandbox event's id (a test delivery's own id for `webhook.test`). */
  eventId: string;
  eventType: string;
  /** The JSON body sent, fixed at creation (so retries and other replicas send the same bytes). */
  payload: string;
  status: WebhookDeliveryStatus;
  attempts: number;
  attemptLog: WebhookAttemptRecord[];
  lastStatusCode: number | null;
  lastError: string | null;
  /** When the next attempt is due (pending), or when a replica's hold lapses (delivering). */
  nextAttemptAt: string;
  /** The replica holding it while `delivering`. */
  claimedBy: string | null;
  deliveredAt: string | null;
  createdAt: string;
}

/** What an attempt's end changes. */
export type WebhookDeliveryPatch = Partial<Pick<WebhookDeliveryRecord, 'status' | 'attempts' | 'attemptLog' | 'lastStatusCode' | 'lastError' | 'nextAttemptAt' | 'claimedBy' | 'deliveredAt'>>;

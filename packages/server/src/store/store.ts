import type { SandboxPatch, SandboxRecord, SandboxStatus } from '../records/sandbox-records.js';
import type { QuotaCheck, QuotaRecord, QuotaScope, QuotaUsage } from '../records/quota-records.js';
import type { ExposureRecord, SshKeyRecord, SshSessionRecord, TunnelFilter, TunnelPatch, TunnelRecord } from '../records/network-records.js';
import type { ImageArtifactRecord, ImageBuildPatch, ImageBuildRecord, ImageBuildStatus } from '../records/image-records.js';
import type { SandboxEventRecord } from '../records/event-records.js';
import type { CheckpointFilter, CheckpointPatch, CheckpointRecord, CheckpointState } from '../records/checkpoint-records.js';
import type { WebhookDeliveryPatch, WebhookDeliveryRecord, WebhookEndpointRecord } from '../records/webhook-records.js';
import type { ApiKeyRecord, RegistryCredentialRecord, TeamMemberRecord, TeamRecord, UserRecord } from '../records/account-records.js';

/** Which sandboxes a listing or bulk operation covers. Every field narrows the set. */
export interface SandboxFilter {
  userId?: string;
  teamId?: string;
  status?: SandboxStatus;
  /** Only sandboxes that are not in a terminal status. */
  activeOnly?: boolean;
  /** Sandboxes that carry every one of these labels. */
  labels?: string[];
  /** Only these ids. */
  ids?: string[];
  /** Only sandboxes whose runtime belongs to this server instance. */
  runtimeOwner?: string;
  /** Only sandboxes written (inserted or patched; `touchSandboxes` does not count) at or after this ISO time. */
  updatedSince?: string;
}

/**
 * Durable state. One interface, two implementations of the same schema: SQLite (embedded
 * default) and PostgreSQL (several replicas). Every method is a single transaction.
 */
export interface Store {
  /** `sqlite` or `postgres`. */
  readonly kind: 'sqlite' | 'postgres';
  /** Applies pending migrations. Safe to call on every start and from several replicas. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  /**
   * Inserts a sandbox. When the same user already has a sandbox with the same idempotency
   * key, nothing is written and that sandbox is returned with `created: false`. With `quota`,
   * the owner's (and team's) active sandboxes plus this one must stay within the limits, or
   * QuotaExceededError is thrown and nothing is written; the check and the insert are one
   * transaction serialized per owner and team (an advisory lock on PostgreSQL), so concurrent
   * creates, on any replica, cannot overshoot.
   */
  insertSandbox(sandbox: SandboxRecord, quota?: QuotaCheck): Promise<{ sandbox: SandboxRecord; created: boolean }>;
  /**
   * What the active sandboxes of a user, or of a team, use now; `diskGb` also counts the bytes
   * stored in their checkpoints (every state but FAILED).
   */
  quotaUsage(scope: QuotaScope, subjectId: string): Promise<QuotaUsage>;
  getQuota(scope: QuotaScope, subjectId: string): Promise<QuotaRecord | undefined>;
  /** Stores a user's or team's override, replacing any earlier one. */
  putQuota(quota: QuotaRecord): Promise<void>;
  deleteQuota(scope: QuotaScope, subjectId: string): Promise<boolean>;
  getSandbox(id: string): Promise<SandboxRecord | undefined>;
  /** The sandboxes with these ids that exist, in no particular order. */
  getSandboxes(ids: readonly string[]): Promise<SandboxRecord[]>;
  /** One page, newest first, and the number of matches. */
  listSandboxes(filter: SandboxFilter, page: number, perPage: number): Promise<{ sandboxes: SandboxRecord[]; total: number }>;
  /** Every match, newest first, up to `limit`. */
  findSandboxes(filter: SandboxFilter, limit: number): Promise<SandboxRecord[]>;
  /**
   * Applies a patch. With `expectStatus`, only when the sandbox is currently in one of those
   * statuses, and with `expectProvisioner` only while that replica holds its provisioning
   * (compare-and-set); returns undefined when it is not, or does not exist.
   */
  updateSandbox(id: string, patch: SandboxPatch, expectStatus?: readonly SandboxStatus[], expectProvisioner?: string): Promise<SandboxRecord | undefined>;
  /**
   * Claims a PENDING or PROVISIONING sandbox's provisioning work for `replicaId` (compare-and-set on
   * `provisioner`): when nobody holds it, `replicaId` already does, or its holder's heartbeat has
   * lapsed (database clock). Returns the claimed row, or undefined when another live replica holds
   * it or the sandbox is not starting (or does not exist). `patch` is applied in the same statement.
   * Notifies `onSandboxUpdated` listeners.
   */
  claimProvisioning(id: string, replicaId: string, patch?: SandboxPatch): Promise<SandboxRecord | undefined>;

  /**
   * Records that replica `replicaId` of deployment `instanceId` (running as `origin`: host name and
   * process id) is alive for `ttlMs` more (the database's clock), creating its row on the first
   * call. Rows lapsed for an hour are deleted.
   */
  heartbeatReplica(replicaId: string, instanceId: string, ttlMs: number, origin?: { host: string; pid: number }): Promise<void>;
  /**
   * Deletes a replica's heartbeat and gives up the leases it holds (a clean shutdown, or a dead
   * predecessor found on this host): its provisioning claims may be adopted at once.
   */
  removeReplica(replicaId: string): Promise<void>;
  /** The live replicas of `instanceId` whose heartbeat names host `host`, with their process ids. */
  liveReplicasOn(instanceId: string, host: string): Promise<Array<{ id: string; pid: number }>>;
  /** The replicas of `instanceId` whose heartbeat has not lapsed, by id. */
  liveReplicas(instanceId: string): Promise<string[]>;
  /**
   * Takes lease `name` for `holder` for `ttlMs` (database clock) when nobody holds it, its holder's
   * lease has lapsed, or `holder` holds it already (a renewal). One statement: of concurrent
   * callers, exactly one gets a free lease. True when `holder` holds it now.
   */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Gives lease `name` up, if `holder` holds it. */
  releaseLease(name: string, holder: string): Promise<void>;
  /**
   * Replaces a sandbox's egress lists and bumps `egressGeneration` by one, in one statement;
   * only while its status is one of `expectStatus`. Returns the row, or undefined.
   */
  setSandboxEgress(id: string, lists: { allowlist: string[] | null; denylist: string[] | null }, expectStatus: readonly SandboxStatus[]): Promise<SandboxRecord | undefined>;
  /**
   * Records that the runtime enforces generation `generation`: raises `egressAppliedGeneration`
   * to it, never lowers it. Returns the row (undefined when the sandbox does not exist).
   */
  markEgressApplied(id: string, generation: number): Promise<SandboxRecord | undefined>;
  /**
   * Calls `listener` with the row after every `updateSandbox` this process commits (not other
   * replicas'). Returns the function that stops the calls. Held creates wait on this.
   */
  onSandboxUpdated(listener: (sandbox: SandboxRecord) => void): () => void;
  /** The active sandboxes of deployment `runtimeOwner`, counted by status and driver (`none` before one is chosen). */
  countActiveSandboxes(runtimeOwner: string): Promise<Array<{ status: SandboxStatus; driver: string; count: number }>>;
  /** Sets `lastActivityAt` for many sandboxes at once. */
  touchSandboxes(ids: readonly string[], at: string): Promise<void>;
  /** Stores events (ids unique); one transaction. */
  insertSandboxEvents(events: readonly SandboxEventRecord[]): Promise<void>;
  /** A sandbox's events with ids after `after` (from the first when null), in id order, at most `limit`. */
  listSandboxEvents(sandboxId: string, after: string | null, limit: number): Promise<SandboxEventRecord[]>;
  /** Deletes up to `limit` ended sandboxes whose `terminatedAt` is before `endedBefore`, with their labels and events; returns how many. */
  purgeEndedSandboxes(endedBefore: string, limit: number): Promise<number>;

  /** Stores a new checkpoint row. */
  insertCheckpoint(checkpoint: CheckpointRecord): Promise<void>;
  getCheckpoint(id: string): Promise<CheckpointRecord | undefined>;
  /** One page, newest first, and the number of matches. */
  listCheckpoints(filter: CheckpointFilter, page: number, perPage: number): Promise<{ checkpoints: CheckpointRecord[]; total: number }>;
  /**
   * Applies a patch; with `expectStates` only while the checkpoint is in one of them
   * (compare-and-set). The updated row, or undefined when it is not (or does not exist).
   */
  updateCheckpoint(id: string, patch: CheckpointPatch, expectStates?: readonly CheckpointState[]): Promise<CheckpointRecord | undefined>;
  /** Deletes the row; true when it existed. */
  deleteCheckpoint(id: string): Promise<boolean>;
  /** Checkpoints of deployment `runtimeOwner`, counted by state. */
  countCheckpoints(runtimeOwner: string): Promise<Array<{ state: CheckpointState; count: number }>>;

  insertUser(user: UserRecord): Promise<void>;
  getUser(id: string): Promise<UserRecord | undefined>;
  getUserByName(name: string): Promise<UserRecord | undefined>;
  listUsers(): Promise<UserRecord[]>;
  deleteUser(id: string): Promise<boolean>;

  insertTeam(team: TeamRecord): Promise<void>;
  getTeam(id: string): Promise<TeamRecord | undefined>;
  getTeamByName(name: string): Promise<TeamRecord | undefined>;
  listTeams(): Promise<TeamRecord[]>;
  deleteTeam(id: string): Promise<boolean>;
  /** Adds a member or changes an existing member's role. */
  upsertTeamMember(member: TeamMemberRecord): Promise<void>;
  removeTeamMember(teamId: string, userId: string): Promise<boolean>;
  listTeamMembers(teamId: string): Promise<TeamMemberRecord[]>;
  /** The teams a user belongs to, with the user's role in each. */
  listMemberships(userId: string): Promise<TeamMemberRecord[]>;

  insertApiKey(key: ApiKeyRecord): Promise<void>;
  getApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined>;
  getApiKey(id: string): Promise<ApiKeyRecord | undefined>;
  listApiKeys(userId?: string): Promise<ApiKeyRecord[]>;
  revokeApiKey(id: string, at: string): Promise<boolean>;
  markApiKeyUsed(id: string, at: string): Promise<void>;

  insertRegistryCredential(credential: RegistryCredentialRecord): Promise<void>;
  getRegistryCredential(id: string): Promise<RegistryCredentialRecord | undefined>;
  /** A user's own credentials and those of the given teams. */
  listRegistryCredentials(userId: string, teamIds: readonly string[]): Promise<RegistryCredentialRecord[]>;
  deleteRegistryCredential(id: string): Promise<boolean>;
  insertWebhookEndpoint(endpoint: WebhookEndpointRecord): Promise<void>;
  getWebhookEndpoint(id: string): Promise<WebhookEndpointRecord | undefined>;
  /** A user's own endpoints and those of the given teams, oldest first. */
  listWebhookEndpoints(userId: string, teamIds: readonly string[]): Promise<WebhookEndpointRecord[]>;
  /** The enabled endpoints that get events of these users' own sandboxes (`teamId` null) or of these teams' sandboxes. */
  findWebhookEndpoints(userIds: readonly string[], teamIds: readonly string[]): Promise<WebhookEndpointRecord[]>;
  /** Deletes the endpoint and its deliveries. */
  deleteWebhookEndpoint(id: string): Promise<boolean>;
  /** Stores deliveries (ids unique); one transaction. */
  insertWebhookDeliveries(deliveries: readonly WebhookDeliveryRecord[]): Promise<void>;
  getWebhookDelivery(id: string): Promise<WebhookDeliveryRecord | undefined>;
  /** An endpoint's deliveries, newest first, at most `limit`. */
  listWebhookDeliveries(endpointId: string, limit: number): Promise<WebhookDeliveryRecord[]>;
  /** Ids of deliveries due at `now`: pending ones whose next attempt is due, and delivering ones whose hold lapsed; oldest due first. */
  dueWebhookDeliveries(now: string, limit: number): Promise<string[]>;
  /**
   * Claims a due delivery for `replicaId` until `holdUntil` (compare-and-set in one statement: it
   * must still be pending and due, or delivering with a lapsed hold). Of concurrent claimers on
   * any replica, exactly one gets the row; the others get undefined.
   */
  claimWebhookDelivery(id: string, replicaId: string, now: string, holdUntil: string): Promise<WebhookDeliveryRecord | undefined>;
  /** Deletes up to `limit` delivered or failed deliveries created before `before`; returns how many. */
  purgeWebhookDeliveries(before: string, limit: number): Promise<number>;
  /** Applies `patch` while `replicaId` holds the delivery; the updated row, or undefined when it does not hold it. */
  updateWebhookDelivery(id: string, patch: WebhookDeliveryPatch, replicaId: string): Promise<WebhookDeliveryRecord | undefined>;
  insertImageBuild(build: ImageBuildRecord): Promise<void>;
  getImageBuild(id: string): Promise<ImageBuildRecord | undefined>;
  /** Applies `patch` when the build's status is one of `expectStatus` (any, when omitted); the updated build, or undefined. */
  updateImageBuild(id: string, patch: ImageBuildPatch, expectStatus?: readonly ImageBuildStatus[]): Promise<ImageBuildRecord | undefined>;
  /** A user's builds (`teamId` null: personal ones; else the team's), newest first, and how many there are. */
  listImageBuilds(userId: string, teamId: string | null, page: { offset: number; limit: number }): Promise<{ rows: ImageBuildRecord[]; total: number }>;
  /** Builds (of every owner) in one of `statuses`, oldest first (at most 10 000). */
  listImageBuildsByStatus(statuses: readonly ImageBuildStatus[]): Promise<ImageBuildRecord[]>;
  /** Inserts the artifact, replacing the one with the same `fullImagePath`. */
  putImageArtifact(artifact: ImageArtifactRecord): Promise<void>;
  getImageArtifactByPath(fullImagePath: string): Promise<ImageArtifactRecord | undefined>;
  /** A user's images (`teamId` null: personal ones; else the team's), by name and tag, filtered by a name substring. */
  listImageArtifacts(userId: string, teamId: string | null, page: { offset: number; limit: number; search: string | null }): Promise<{ rows: ImageArtifactRecord[]; total: number }>;
  deleteImageArtifact(id: string): Promise<boolean>;
  insertExposure(exposure: ExposureRecord): Promise<void>;
  getExposure(id: string): Promise<ExposureRecord | undefined>;
  /** Exposures of these sandboxes (every exposure when `sandboxIds` is null), oldest first. */
  listExposures(sandboxIds: readonly string[] | null): Promise<ExposureRecord[]>;
  deleteExposure(id: string): Promise<boolean>;
  /**
   * Deletes the exposures and SSH sessions of sandboxes that have ended or no longer exist, and
   * SSH sessions that expired before `now`; returns the ids it deleted.
   */
  purgeNetworkOfEndedSandboxes(now: string): Promise<{ exposureIds: string[]; sshSessionIds: string[] }>;

  /**
   * Deletes the SSH sessions and tunnels whose API key is revoked or gone, and the tunnels of
   * users that no longer exist; returns the ids it deleted.
   */
  purgeRevokedNetworkAccess(): Promise<{ sshSessionIds: string[]; tunnelIds: string[] }>;

  insertSshSession(session: SshSessionRecord): Promise<void>;
  getSshSession(id: string): Promise<SshSessionRecord | undefined>;
  /** Deletes the session and its keys. */
  deleteSshSession(id: string): Promise<boolean>;
  /** Admits a key for a session, or moves the expiry of a key admitted before. */
  upsertSshKey(key: SshKeyRecord): Promise<void>;
  /** The session's keys that expire after `now`. */
  listSshKeys(sessionId: string, now: string): Promise<SshKeyRecord[]>;

  insertTunnel(tunnel: TunnelRecord): Promise<void>;
  getTunnel(id: string): Promise<TunnelRecord | undefined>;
  /** One page, newest first, and the number of matches. */
  listTunnels(filter: TunnelFilter, page: number, perPage: number): Promise<{ tunnels: TunnelRecord[]; total: number }>;
  updateTunnel(id: string, patch: TunnelPatch): Promise<TunnelRecord | undefined>;
  deleteTunnel(id: string): Promise<boolean>;
  /** Marks tunnels past `expiresAt` as expired; returns their ids. */
  expireTunnels(now: string): Promise<string[]>;
}

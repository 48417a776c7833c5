import { type Kysely, Migrator, type RawBuilder, type Selectable, type Transaction, type Updateable, sql } from 'kysely';
import type { SandboxPatch, SandboxRecord, SandboxStatus } from '../records/sandbox-records.js';
import { ACTIVE_STATUSES } from '../records/sandbox-records.js';
import { TERMINAL_STATUSES } from '../records/sandbox-records.js';
import { migrationProvider } from './migrations.js';
import type { SandboxEventRecord, SandboxEventType } from '../records/event-records.js';
import { checkQuota, type QuotaCheck, type QuotaRecord, type QuotaScope, type QuotaUsage } from '../records/quota-records.js';
import type { ExposureRecord, ExposureProtocol, SshKeyRecord, SshSessionRecord, TunnelFilter, TunnelPatch, TunnelRecord, TunnelStatus } from '../records/network-records.js';
import type { ExposuresTable, NetworkDatabase, SshSessionsTable, TunnelsTable } from './network-tables.js';
import type { ImageArtifactRecord, ImageBuildPatch, ImageBuildRecord, ImageBuildStatus, ImageVisibility } from '../records/image-records.js';
import type { ImageArtifactsTable, ImageBuildsTable } from './schema.js';
import type { ApiKeysTable, Database, RegistryCredentialsTable, SandboxesTable, TeamMembersTable, UsersTable, WebhookDeliveriesTable, WebhookEndpointsTable } from './schema.js';
import type { WebhookAttemptRecord, WebhookDeliveryPatch, WebhookDeliveryRecord, WebhookDeliveryStatus, WebhookEndpointRecord } from '../records/webhook-records.js';
import type { SandboxFilter, Store } from './store.js';
import type { CheckpointFilter, CheckpointPatch, CheckpointRecord, CheckpointState } from '../records/checkpoint-records.js';
import * as checkpoints from './checkpoint-store.js';
import type { ApiKeyRecord, RegistryCredentialRecord, TeamMemberRecord, TeamRecord, TeamRole, UserRecord } from '../records/account-records.js';

type SandboxRow = Selectable<SandboxesTable>;

function parseJson<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}

function toJson(value: unknown): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

function rowToSandbox(row: SandboxRow): SandboxRecord {
  return {
    id: row.id,
    name: row.name,
    dockerImage: row.docker_image,
    startCommand: row.start_command,
    cpuCores: Number(row.cpu_cores),
    memoryGb: Number(row.memory_gb),
    diskSizeGb: Number(row.disk_size_gb),
    gpuCount: Number(row.gpu_count),
    gpuType: row.gpu_type,
    vm: Number(row.vm) === 1,
    networkAccess: Number(row.network_access) === 1,
    networkAllowlist: parseJson<string[]>(row.network_allowlist),
    networkDenylist: parseJson<string[]>(row.network_denylist),
    egressGeneration: Number(row.egress_generation),
    egressAppliedGeneration: Number(row.egress_applied_generation),
    status: row.status as SandboxStatus,
    timeoutMinutes: Number(row.timeout_minutes),
    idleTimeoutMinutes: row.idle_timeout_minutes === null ? null : Number(row.idle_timeout_minutes),
    terminationReason: row.termination_reason,
    environmentVars: parseJson<Record<string, string>>(row.environment_vars),
    secrets: parseJson<Record<string, string>>(row.secrets),
    advancedConfigs: parseJson<Record<string, unknown>>(row.advanced_configs),
    labels: parseJson<string[]>(row.labels) ?? [],
    userId: row.user_id,
    teamId: row.team_id,
    region: row.region,
    registryCredentialsId: row.registry_credentials_id,
    guaranteed: Number(row.guaranteed) === 1,
    idempotencyKey: row.idempotency_key,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    terminatedAt: row.terminated_at,
    lastActivityAt: row.last_activity_at,
    exitCode: row.exit_code === null ? null : Number(row.exit_code),
    errorType: row.error_type,
    errorMessage: row.error_message,
    runtimeDriver: row.runtime_driver,
    runtimeId: row.runtime_id,
    runtimeOwner: row.runtime_owner,
    admissionDeadline: row.admission_deadline ?? null,
    kubernetesJobId: row.kubernetes_job_id ?? null,
    pausedAt: row.paused_at ?? null,
    pausedMs: Number(row.paused_ms ?? 0),
    provisioner: row.provisioner ?? null,
    checkpointId: row.checkpoint_id ?? null,
  };
}

function sandboxToRow(s: SandboxRecord): SandboxRow {
  return {
    id: s.id,
    name: s.name,
    docker_image: s.dockerImage,
    start_command: s.startCommand,
    cpu_cores: s.cpuCores,
    memory_gb: s.memoryGb,
    disk_size_gb: s.diskSizeGb,
    gpu_count: s.gpuCount,
    gpu_type: s.gpuType,
    vm: s.vm ? 1 : 0,
    network_access: s.networkAccess ? 1 : 0,
    network_allowlist: toJson(s.networkAllowlist),
    network_denylist: toJson(s.networkDenylist),
    egress_generation: s.egressGeneration,
    egress_applied_generation: s.egressAppliedGeneration,
    status: s.status,
    timeout_minutes: s.timeoutMinutes,
    idle_timeout_minutes: s.idleTimeoutMinutes,
    termination_reason: s.terminationReason,
    environment_vars: toJson(s.environmentVars),
    secrets: toJson(s.secrets),
    advanced_configs: toJson(s.advancedConfigs),
    labels: JSON.stringify(s.labels),
    user_id: s.userId,
    team_id: s.teamId,
    region: s.region,
    registry_credentials_id: s.registryCredentialsId,
    guaranteed: s.guaranteed ? 1 : 0,
    idempotency_key: s.idempotencyKey,
    created_at: s.createdAt,
    updated_at: s.updatedAt,
    started_at: s.startedAt,
    terminated_at: s.terminatedAt,
    last_activity_at: s.lastActivityAt,
    exit_code: s.exitCode,
    error_type: s.errorType,
    error_message: s.errorMessage,
    runtime_driver: s.runtimeDriver,
    runtime_id: s.runtimeId,
    runtime_owner: s.runtimeOwner,
    admission_deadline: s.admissionDeadline,
    kubernetes_job_id: s.kubernetesJobId,
    paused_at: s.pausedAt,
    paused_ms: s.pausedMs,
    provisioner: s.provisioner,
    checkpoint_id: s.checkpointId,
  };
}

const PATCH_COLUMNS: { [K in keyof Required<SandboxPatch>]: keyof SandboxesTable } = {
  status: 'status',
  timeoutMinutes: 'timeout_minutes',
  labels: 'labels',
  terminationReason: 'termination_reason',
  startedAt: 'started_at',
  terminatedAt: 'terminated_at',
  lastActivityAt: 'last_activity_at',
  exitCode: 'exit_code',
  errorType: 'error_type',
  errorMessage: 'error_message',
  runtimeDriver: 'runtime_driver',
  runtimeId: 'runtime_id',
  runtimeOwner: 'runtime_owner',
  provisioner: 'provisioner',
  idleTimeoutMinutes: 'idle_timeout_minutes',
  egressAppliedGeneration: 'egress_applied_generation',
  kubernetesJobId: 'kubernetes_job_id',
  pausedAt: 'paused_at',
  pausedMs: 'paused_ms',
};

/** The columns a patch sets, with `updated_at` now. */
function patchValues(patch: SandboxPatch): Record<string, string | number | null> {
  const values: Record<string, string | number | null> = { updated_at: new Date().toISOString() };
  for (const [key, column] of Object.entries(PATCH_COLUMNS) as [keyof SandboxPatch, keyof SandboxesTable][]) {
    const value = patch[key];
    if (value === undefined) continue;
    values[column] = key === 'labels' ? JSON.stringify(value) : (value as string | number | null);
  }
  return values;
}

function rowToUser(row: Selectable<UsersTable>): UserRecord {
  return { id: row.id, name: row.name, email: row.email, isAdmin: Number(row.is_admin) === 1, createdAt: row.created_at };
}

function rowToMember(row: Selectable<TeamMembersTable>): TeamMemberRecord {
  return { teamId: row.team_id, userId: row.user_id, role: row.role as TeamRole, createdAt: row.created_at };
}

function rowToKey(row: Selectable<ApiKeysTable>): ApiKeyRecord {
  return {
    id: row.id,
    userId: row.user_id,
    name: row.name,
    prefix: row.prefix,
    keyHash: row.key_hash,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

function rowToImageBuild(row: Selectable<ImageBuildsTable>): ImageBuildRecord {
  return {
    id: row.id,
    userId: row.user_id,
    teamId: row.team_id,
    imageName: row.image_name,
    imageTag: row.image_tag,
    dockerfilePath: row.dockerfile_path,
    fullImagePath: row.full_image_path,
    status: row.status as ImageBuildStatus,
    contextBytes: row.context_bytes === null ? null : Number(row.context_bytes),
    failedStep: row.failed_step,
    errorMessage: row.error_message,
    createdAt: row.created_at,
    startedAt: row.started_at,
    completedAt: row.completed_at,
    replicaId: row.replica_id,
    visibility: row.visibility as ImageVisibility,
  };
}

function rowToImageArtifact(row: Selectable<ImageArtifactsTable>): ImageArtifactRecord {
  return {
    id: row.id,
    userId: row.user_id,
    teamId: row.team_id,
    imageName: row.image_name,
    imageTag: row.image_tag,
    fullImagePath: row.full_image_path,
    runtimeRef: row.runtime_ref,
    visibility: row.visibility as ImageVisibility,
    sizeBytes: Number(row.size_bytes),
    buildId: row.build_id,
    createdAt: row.created_at,
    pushedAt: row.pushed_at,
  };
}

function rowToWebhookEndpoint(row: Selectable<WebhookEndpointsTable>): WebhookEndpointRecord {
  return {
    id: row.id,
    userId: row.user_id,
    teamId: row.team_id,
    url: row.url,
    eventTypes: JSON.parse(row.event_types) as string[],
    secret: row.secret,
    enabled: Number(row.enabled) === 1,
    createdAt: row.created_at,
  };
}

function rowToWebhookDelivery(row: Selectable<WebhookDeliveriesTable>): WebhookDeliveryRecord {
  return {
    id: row.id,
    endpointId: row.endpoint_id,
    eventId: row.event_id,
    eventType: row.event_type,
    payload: row.payload,
    status: row.status as WebhookDeliveryStatus,
    attempts: Number(row.attempts),
    attemptLog: JSON.parse(row.attempt_log) as WebhookAttemptRecord[],
    lastStatusCode: row.last_status_code === null ? null : Number(row.last_status_code),
    lastError: row.last_error,
    nextAttemptAt: row.next_attempt_at,
    claimedBy: row.claimed_by,
    deliveredAt: row.delivered_at,
    createdAt: row.created_at,
  };
}

function webhookDeliveryPatchValues(patch: WebhookDeliveryPatch): Updateable<WebhookDeliveriesTable> {
  const values: Updateable<WebhookDeliveriesTable> = {};
  if (patch.status !== undefined) values.status = patch.status;
  if (patch.attempts !== undefined) values.attempts = patch.attempts;
  if (patch.attemptLog !== undefined) values.attempt_log = JSON.stringify(patch.attemptLog);
  if (patch.lastStatusCode !== undefined) values.last_status_code = patch.lastStatusCode;
  if (patch.lastError !== undefined) values.last_error = patch.lastError;
  if (patch.nextAttemptAt !== undefined) values.next_attempt_at = patch.nextAttemptAt;
  if (patch.claimedBy !== undefined) values.claimed_by = patch.claimedBy;
  if (patch.deliveredAt !== undefined) values.delivered_at = patch.deliveredAt;
  return values;
}

function rowToCredential(row: Selectable<RegistryCredentialsTable>): RegistryCredentialRecord {
  return {
    id: row.id,
    userId: row.user_id,
    teamId: row.team_id,
    name: row.name,
    server: row.server,
    username: row.username,
    password: row.password,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function credentialToRow(c: RegistryCredentialRecord): Selectable<RegistryCredentialsTable> {
  return {
    id: c.id,
    user_id: c.userId,
    team_id: c.teamId,
    name: c.name,
    server: c.server,
    username: c.username,
    password: c.password,
    created_at: c.createdAt,
    updated_at: c.updatedAt,
  };
}

/** True when a driver error is a unique-constraint violation (SQLite or PostgreSQL). */
function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' ||
    (typeof message === 'string' && message.includes('UNIQUE constraint failed'));
}

/** The store over Kysely: the same queries for SQLite and PostgreSQL. */
export class KyselyStore implements Store {
  private readonly updateListeners = new Set<(sandbox: SandboxRecord) => void>();

  constructor(
    readonly kind: 'sqlite' | 'postgres',
    private readonly db: Kysely<Database>,
  ) {}

  async migrate(): Promise<void> {
    const migrator = new Migrator({ db: this.db, provider: migrationProvider });
    const { error } = await migrator.migrateToLatest();
    if (error) throw error instanceof Error ? error : new Error(String(error));
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  async insertSandbox(sandbox: SandboxRecord, quota?: QuotaCheck): Promise<{ sandbox: SandboxRecord; created: boolean }> {
    try {
      const existing = await this.db.transaction().execute(async (trx) => {
        if (quota) {
          // An idempotent retry returns what the first call created, whatever the quota says now.
          if (sandbox.idempotencyKey !== null) {
            const earlier = await trx
              .selectFrom('sandboxes')
              .selectAll()
              .where('user_id', '=', sandbox.userId)
              .where('idempotency_key', '=', sandbox.idempotencyKey)
              .executeTakeFirst();
            if (earlier) return rowToSandbox(earlier);
          }
          const asked: QuotaUsage = { sandboxes: 1, cpuCores: sandbox.cpuCores, memoryGb: sandbox.memoryGb, diskGb: sandbox.diskSizeGb };
          // SQLite runs one transaction at a time; PostgreSQL serializes creates per owner and team
          // (always user first, then team, so two locks never wait on each other in a cycle).
          await this.lockQuota(trx, 'user', sandbox.userId);
          checkQuota('user', sandbox.userId, quota.user, await this.usageIn(trx, 'user', sandbox.userId), asked);
          if (quota.team && sandbox.teamId !== null) {
            await this.lockQuota(trx, 'team', sandbox.teamId);
            checkQuota('team', sandbox.teamId, quota.team, await this.usageIn(trx, 'team', sandbox.teamId), asked);
          }
        }
        await trx.insertInto('sandboxes').values(sandboxToRow(sandbox)).execute();
        await this.writeLabels(trx, sandbox.id, sandbox.labels);
        return undefined;
      });
      return existing ? { sandbox: existing, created: false } : { sandbox, created: true };
    } catch (error) {
      if (sandbox.idempotencyKey !== null && isUniqueViolation(error)) {
        const existing = await this.db
          .selectFrom('sandboxes')
          .selectAll()
          .where('user_id', '=', sandbox.userId)
          .where('idempotency_key', '=', sandbox.idempotencyKey)
          .executeTakeFirst();
        if (existing) return { sandbox: rowToSandbox(existing), created: false };
      }
      throw error;
    }
  }

  private async lockQuota(trx: Transaction<Database>, scope: QuotaScope, subjectId: string): Promise<void> {
    if (this.kind !== 'postgres') return;
    await sql`select pg_advisory_xact_lock(hashtext(${`corral-quota:${scope}:${subjectId}`}))`.execute(trx);
  }

  private async usageIn(db: Kysely<Database>, scope: QuotaScope, subjectId: string): Promise<QuotaUsage> {
    const row = await db
      .selectFrom('sandboxes')
      .select((eb) => [
        eb.fn.countAll().as('sandboxes'),
        eb.fn.sum<number | string | null>('cpu_cores').as('cpu'),
        eb.fn.sum<number | string | null>('memory_gb').as('memory'),
        eb.fn.sum<number | string | null>('disk_size_gb').as('disk'),
      ])
      .where(scope === 'user' ? 'user_id' : 'team_id', '=', subjectId)
      .where('status', 'in', [...ACTIVE_STATUSES])
      .executeTakeFirst();
    const checkpointGb = (await checkpoints.checkpointBytes(db, scope, subjectId)) / 1024 ** 3;
    return {
      sandboxes: Number(row?.sandboxes ?? 0),
      cpuCores: Number(row?.cpu ?? 0),
      memoryGb: Number(row?.memory ?? 0),
      diskGb: Number(row?.disk ?? 0) + checkpointGb,
    };
  }

  async quotaUsage(scope: QuotaScope, subjectId: string): Promise<QuotaUsage> {
    return this.usageIn(this.db, scope, subjectId);
  }

  async getQuota(scope: QuotaScope, subjectId: string): Promise<QuotaRecord | undefined> {
    const row = await this.db.selectFrom('quotas').selectAll().where('scope', '=', scope).where('subject_id', '=', subjectId).executeTakeFirst();
    if (!row) return undefined;
    const num = (v: number | null): number | null => (v === null ? null : Number(v));
    return {
      scope,
      subjectId,
      sandboxes: num(row.max_sandboxes),
      cpuCores: num(row.cpu_cores),
      memoryGb: num(row.memory_gb),
      diskGb: num(row.disk_gb),
      updatedAt: row.updated_at,
    };
  }

  async putQuota(q: QuotaRecord): Promise<void> {
    const values = { max_sandboxes: q.sandboxes, cpu_cores: q.cpuCores, memory_gb: q.memoryGb, disk_gb: q.diskGb, updated_at: q.updatedAt };
    await this.db
      .insertInto('quotas')
      .values({ scope: q.scope, subject_id: q.subjectId, ...values })
      .onConflict((oc) => oc.columns(['scope', 'subject_id']).doUpdateSet(values))
      .execute();
  }

  async deleteQuota(scope: QuotaScope, subjectId: string): Promise<boolean> {
    const result = await this.db.deleteFrom('quotas').where('scope', '=', scope).where('subject_id', '=', subjectId).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  private async writeLabels(trx: Transaction<Database>, sandboxId: string, labels: readonly string[]): Promise<void> {
    await trx.deleteFrom('sandbox_labels').where('sandbox_id', '=', sandboxId).execute();
    const unique = [...new Set(labels)];
    if (unique.length > 0) {
      await trx
        .insertInto('sandbox_labels')
        .values(unique.map((label) => ({ sandbox_id: sandboxId, label })))
        .execute();
    }
  }

  async getSandbox(id: string): Promise<SandboxRecord | undefined> {
    const row = await this.db.selectFrom('sandboxes').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToSandbox(row) : undefined;
  }

  /**
   * `id` is one of `ids`, bound as ONE parameter (a text array in PostgreSQL, a JSON array in
   * SQLite): an `IN ($1, $2, ...)` list breaks past 32,766 (SQLite) or 65,535 (PostgreSQL) ids.
   */
  private idIn(ids: readonly string[]): RawBuilder<boolean> {
    return this.kind === 'postgres'
      ? sql<boolean>`${sql.ref('id')} = any(${[...ids]}::text[])`
      : sql<boolean>`${sql.ref('id')} in (select value from json_each(${JSON.stringify(ids)}))`;
  }

  async getSandboxes(ids: readonly string[]): Promise<SandboxRecord[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.selectFrom('sandboxes').selectAll().where(this.idIn(ids)).execute();
    return rows.map(rowToSandbox);
  }

  private filtered(filter: SandboxFilter) {
    let query = this.db.selectFrom('sandboxes');
    if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
    if (filter.runtimeOwner !== undefined) query = query.where('runtime_owner', '=', filter.runtimeOwner);
    if (filter.teamId !== undefined) query = query.where('team_id', '=', filter.teamId);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    if (filter.updatedSince !== undefined) query = query.where('updated_at', '>=', filter.updatedSince);
    // `in (active)` rather than `not in (terminal)`: the status index then skips the terminated
    // history, which is most rows of a long-lived store.
    if (filter.activeOnly) query = query.where('status', 'in', [...ACTIVE_STATUSES]);
    if (filter.ids !== undefined) {
      query = filter.ids.length === 0 ? query.where(sql<boolean>`1 = 0`) : query.where(this.idIn(filter.ids));
    }
    const labels = [...new Set(filter.labels ?? [])];
    if (labels.length > 0) {
      query = query.where('id', 'in', (eb) =>
        eb
          .selectFrom('sandbox_labels')
          .select('sandbox_id')
          .where('label', 'in', labels)
          .groupBy('sandbox_id')
          .having(sql`count(*)`, '=', labels.length),
      );
    }
    return query;
  }

  async listSandboxes(
    filter: SandboxFilter,
    page: number,
    perPage: number,
  ): Promise<{ sandboxes: SandboxRecord[]; total: number }> {
    const base = this.filtered(filter);
    const [rows, count] = await Promise.all([
      base
        .selectAll()
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc')
        .limit(perPage)
        .offset((page - 1) * perPage)
        .execute(),
      base.select(sql<string | number>`count(*)`.as('n')).executeTakeFirstOrThrow(),
    ]);
    return { sandboxes: rows.map(rowToSandbox), total: Number(count.n) };
  }

  async findSandboxes(filter: SandboxFilter, limit: number): Promise<SandboxRecord[]> {
    const rows = await this.filtered(filter)
      .selectAll()
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.map(rowToSandbox);
  }

  async updateSandbox(
    id: string,
    patch: SandboxPatch,
    expectStatus?: readonly SandboxStatus[],
    expectProvisioner?: string,
  ): Promise<SandboxRecord | undefined> {
    const values = patchValues(patch);
    // Nothing is in no status; and `in ()` is a syntax error in PostgreSQL.
    if (expectStatus && expectStatus.length === 0) return undefined;
    const updated = await this.db.transaction().execute(async (trx) => {
      let query = trx.updateTable('sandboxes').set(values as Updateable<SandboxesTable>).where('id', '=', id);
      if (expectStatus) query = query.where('status', 'in', [...expectStatus]);
      if (expectProvisioner !== undefined) query = query.where('provisioner', '=', expectProvisioner);
      const result = await query.executeTakeFirst();
      if (Number(result.numUpdatedRows) === 0) return undefined;
      if (patch.labels) await this.writeLabels(trx, id, patch.labels);
      const row = await trx.selectFrom('sandboxes').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      return rowToSandbox(row);
    });
    if (updated) for (const listener of this.updateListeners) listener(updated);
    return updated;
  }

  async setSandboxEgress(
    id: string,
    lists: { allowlist: string[] | null; denylist: string[] | null },
    expectStatus: readonly SandboxStatus[],
  ): Promise<SandboxRecord | undefined> {
    if (expectStatus.length === 0) return undefined;
    const updated = await this.db.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('sandboxes')
        .set((eb) => ({
          network_allowlist: toJson(lists.allowlist),
          network_denylist: toJson(lists.denylist),
          egress_generation: eb('egress_generation', '+', 1),
          updated_at: new Date().toISOString(),
        }))
        .where('id', '=', id)
        .where('status', 'in', [...expectStatus])
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) === 0) return undefined;
      return rowToSandbox(await trx.selectFrom('sandboxes').selectAll().where('id', '=', id).executeTakeFirstOrThrow());
    });
    if (updated) for (const listener of this.updateListeners) listener(updated);
    return updated;
  }

  async markEgressApplied(id: string, generation: number): Promise<SandboxRecord | undefined> {
    const updated = await this.db.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('sandboxes')
        .set({ egress_applied_generation: generation, updated_at: new Date().toISOString() })
        .where('id', '=', id)
        .where('egress_applied_generation', '<', generation)
        .executeTakeFirst();
      const row = await trx.selectFrom('sandboxes').selectAll().where('id', '=', id).executeTakeFirst();
      return { row: row ? rowToSandbox(row) : undefined, changed: Number(result.numUpdatedRows) > 0 };
    });
    if (updated.changed && updated.row) for (const listener of this.updateListeners) listener(updated.row);
    return updated.row;
  }

  onSandboxUpdated(listener: (sandbox: SandboxRecord) => void): () => void {
    this.updateListeners.add(listener);
    return () => this.updateListeners.delete(listener);
  }

  async touchSandboxes(ids: readonly string[], at: string): Promise<void> {
    if (ids.length === 0) return;
    await this.db.updateTable('sandboxes').set({ last_activity_at: at }).where(this.idIn(ids)).execute();
  }

  async insertUser(user: UserRecord): Promise<void> {
    await this.db
      .insertInto('users')
      .values({ id: user.id, name: user.name, email: user.email, is_admin: user.isAdmin ? 1 : 0, created_at: user.createdAt })
      .execute();
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToUser(row) : undefined;
  }

  async getUserByName(name: string): Promise<UserRecord | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
    return row ? rowToUser(row) : undefined;
  }

  async listUsers(): Promise<UserRecord[]> {
    const rows = await this.db.selectFrom('users').selectAll().orderBy('created_at').orderBy('id').execute();
    return rows.map(rowToUser);
  }

  async deleteUser(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('api_keys').where('user_id', '=', id).execute();
      await trx.deleteFrom('team_members').where('user_id', '=', id).execute();
      await trx.deleteFrom('quotas').where('scope', '=', 'user').where('subject_id', '=', id).execute();
      const result = await trx.deleteFrom('users').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  async insertTeam(team: TeamRecord): Promise<void> {
    await this.db.insertInto('teams').values({ id: team.id, name: team.name, created_at: team.createdAt }).execute();
  }

  async getTeam(id: string): Promise<TeamRecord | undefined> {
    const row = await this.db.selectFrom('teams').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? { id: row.id, name: row.name, createdAt: row.created_at } : undefined;
  }

  async getTeamByName(name: string): Promise<TeamRecord | undefined> {
    const row = await this.db.selectFrom('teams').selectAll().where('name', '=', name).executeTakeFirst();
    return row ? { id: row.id, name: row.name, createdAt: row.created_at } : undefined;
  }

  async listTeams(): Promise<TeamRecord[]> {
    const rows = await this.db.selectFrom('teams').selectAll().orderBy('created_at').orderBy('id').execute();
    return rows.map((row) => ({ id: row.id, name: row.name, createdAt: row.created_at }));
  }

  async deleteTeam(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('team_members').where('team_id', '=', id).execute();
      await trx.deleteFrom('quotas').where('scope', '=', 'team').where('subject_id', '=', id).execute();
      const result = await trx.deleteFrom('teams').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  async upsertTeamMember(member: TeamMemberRecord): Promise<void> {
    await this.db
      .insertInto('team_members')
      .values({ team_id: member.teamId, user_id: member.userId, role: member.role, created_at: member.createdAt })
      .onConflict((oc) => oc.columns(['team_id', 'user_id']).doUpdateSet({ role: member.role }))
      .execute();
  }

  async removeTeamMember(teamId: string, userId: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom('team_members')
      .where('team_id', '=', teamId)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async listTeamMembers(teamId: string): Promise<TeamMemberRecord[]> {
    const rows = await this.db.selectFrom('team_members').selectAll().where('team_id', '=', teamId).orderBy('created_at').execute();
    return rows.map(rowToMember);
  }

  async listMemberships(userId: string): Promise<TeamMemberRecord[]> {
    const rows = await this.db.selectFrom('team_members').selectAll().where('user_id', '=', userId).execute();
    return rows.map(rowToMember);
  }

  async insertApiKey(key: ApiKeyRecord): Promise<void> {
    await this.db
      .insertInto('api_keys')
      .values({
        id: key.id,
        user_id: key.userId,
        name: key.name,
        prefix: key.prefix,
        key_hash: key.keyHash,
        created_at: key.createdAt,
        last_used_at: key.lastUsedAt,
        revoked_at: key.revokedAt,
      })
      .execute();
  }

  async getApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    const row = await this.db.selectFrom('api_keys').selectAll().where('key_hash', '=', keyHash).executeTakeFirst();
    return row ? rowToKey(row) : undefined;
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const row = await this.db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToKey(row) : undefined;
  }

  async listApiKeys(userId?: string): Promise<ApiKeyRecord[]> {
    let query = this.db.selectFrom('api_keys').selectAll();
    if (userId !== undefined) query = query.where('user_id', '=', userId);
    const rows = await query.orderBy('created_at').orderBy('id').execute();
    return rows.map(rowToKey);
  }

  async revokeApiKey(id: string, at: string): Promise<boolean> {
    const result = await this.db
      .updateTable('api_keys')
      .set({ revoked_at: at })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async markApiKeyUsed(id: string, at: string): Promise<void> {
    await this.db.updateTable('api_keys').set({ last_used_at: at }).where('id', '=', id).execute();
  }

  async countActiveSandboxes(runtimeOwner: string): Promise<Array<{ status: SandboxStatus; driver: string; count: number }>> {
    const rows = await this.db
      .selectFrom('sandboxes')
      .select(['status', 'runtime_driver', (eb) => eb.fn.countAll<number | string>().as('n')])
      .where('runtime_owner', '=', runtimeOwner)
      .where('status', 'in', [...ACTIVE_STATUSES])
      .groupBy(['status', 'runtime_driver'])
      .execute();
    return rows.map((row) => ({ status: row.status as SandboxStatus, driver: row.runtime_driver ?? 'none', count: Number(row.n) }));
  }

  async insertSandboxEvents(events: readonly SandboxEventRecord[]): Promise<void> {
    if (events.length === 0) return;
    const rows = events.map((e) => ({
      id: e.id,
      sandbox_id: e.sandboxId,
      at: e.at,
      type: e.type,
      user_id: e.actor?.userId ?? null,
      key_id: e.actor?.keyId ?? null,
      data: JSON.stringify(e.data),
    }));
    // Bounded statements: SQLite allows 32 766 parameters, PostgreSQL 65 535.
    await this.db.transaction().execute(async (trx) => {
      for (let i = 0; i < rows.length; i += 500) await trx.insertInto('sandbox_events').values(rows.slice(i, i + 500)).execute();
    });
  }

  async listSandboxEvents(sandboxId: string, after: string | null, limit: number): Promise<SandboxEventRecord[]> {
    let query = this.db.selectFrom('sandbox_events').selectAll().where('sandbox_id', '=', sandboxId);
    if (after !== null) query = query.where('id', '>', after);
    const rows = await query.orderBy('id').limit(limit).execute();
    return rows.map((row) => ({
      id: row.id,
      sandboxId: row.sandbox_id,
      at: row.at,
      type: row.type as SandboxEventType,
      actor: row.user_id === null ? null : { userId: row.user_id, keyId: row.key_id },
      data: JSON.parse(row.data) as Record<string, unknown>,
    }));
  }

  async purgeEndedSandboxes(endedBefore: string, limit: number): Promise<number> {
    const rows = await this.db
      .selectFrom('sandboxes')
      .select('id')
      .where('status', 'in', [...TERMINAL_STATUSES])
      .where('terminated_at', '<', endedBefore)
      .limit(limit)
      .execute();
    if (rows.length === 0) return 0;
    const ids = rows.map((r) => r.id);
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('sandbox_labels').where('sandbox_id', 'in', ids).execute();
      await trx.deleteFrom('sandbox_events').where('sandbox_id', 'in', ids).execute();
      await trx.deleteFrom('sandboxes').where('id', 'in', ids).execute();
    });
    return ids.length;
  }

  insertCheckpoint(checkpoint: CheckpointRecord): Promise<void> {
    return checkpoints.insertCheckpoint(this.db, checkpoint);
  }

  getCheckpoint(id: string): Promise<CheckpointRecord | undefined> {
    return checkpoints.getCheckpoint(this.db, id);
  }

  listCheckpoints(filter: CheckpointFilter, page: number, perPage: number): Promise<{ checkpoints: CheckpointRecord[]; total: number }> {
    return checkpoints.listCheckpoints(this.db, filter, page, perPage);
  }

  updateCheckpoint(id: string, patch: CheckpointPatch, expectStates?: readonly CheckpointState[]): Promise<CheckpointRecord | undefined> {
    return checkpoints.updateCheckpoint(this.db, id, patch, expectStates);
  }

  deleteCheckpoint(id: string): Promise<boolean> {
    return checkpoints.deleteCheckpoint(this.db, id);
  }

  countCheckpoints(runtimeOwner: string): Promise<Array<{ state: CheckpointState; count: number }>> {
    return checkpoints.countCheckpoints(this.db, runtimeOwner);
  }

  /** Now on the database's clock, in ms since the epoch (every lease compares against it, never a replica's clock). */
  private dbNowMs(): RawBuilder<number> {
    return this.kind === 'postgres'
      ? sql<number>`(extract(epoch from now()) * 1000)::double precision`
      : sql<number>`((julianday('now') - 2440587.5) * 86400000.0)`;
  }

  async heartbeatReplica(replicaId: string, instanceId: string, ttlMs: number, origin: { host: string; pid: number } = { host: '', pid: 0 }): Promise<void> {
    const expires = sql<number>`${this.dbNowMs()} + ${ttlMs}`;
    await this.db
      .insertInto('replicas')
      .values({ id: replicaId, instance_id: instanceId, started_at: new Date().toISOString(), expires_at: expires, host: origin.host, pid: origin.pid })
      .onConflict((oc) => oc.column('id').doUpdateSet({ instance_id: instanceId, expires_at: expires, host: origin.host, pid: origin.pid }))
      .execute();
    // Heartbeats lapsed for an hour are of replicas long gone.
    await this.db.deleteFrom('replicas').where('expires_at', '<', sql<number>`${this.dbNowMs()} - 3600000`).execute();
  }

  async removeReplica(replicaId: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('leases').where('holder', '=', replicaId).execute();
      await trx.deleteFrom('replicas').where('id', '=', replicaId).execute();
    });
  }

  async liveReplicasOn(instanceId: string, host: string): Promise<Array<{ id: string; pid: number }>> {
    const rows = await this.db
      .selectFrom('replicas')
      .select(['id', 'pid'])
      .where('instance_id', '=', instanceId)
      .where('host', '=', host)
      .where('expires_at', '>', this.dbNowMs())
      .orderBy('id')
      .execute();
    return rows.map((r) => ({ id: r.id, pid: Number(r.pid) }));
  }

  async liveReplicas(instanceId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('replicas')
      .select('id')
      .where('instance_id', '=', instanceId)
      .where('expires_at', '>', this.dbNowMs())
      .orderBy('id')
      .execute();
    return rows.map((r) => r.id);
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const expires = sql<number>`${this.dbNowMs()} + ${ttlMs}`;
    // One statement: insert, or take over when the lease is the holder's own or has lapsed.
    const result = await this.db
      .insertInto('leases')
      .values({ name, holder, expires_at: expires })
      .onConflict((oc) =>
        oc
          .column('name')
          .doUpdateSet({ holder, expires_at: expires })
          .where((eb) => eb.or([eb('leases.holder', '=', holder), eb('leases.expires_at', '<=', this.dbNowMs())])),
      )
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.db.deleteFrom('leases').where('name', '=', name).where('holder', '=', holder).execute();
  }

  async claimProvisioning(id: string, replicaId: string, patch: SandboxPatch = {}): Promise<SandboxRecord | undefined> {
    const live = this.db.selectFrom('replicas').select('id').where('expires_at', '>', this.dbNowMs());
    const values = { ...patchValues(patch), provisioner: replicaId };
    const claimed = await this.db.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('sandboxes')
        .set(values as Updateable<SandboxesTable>)
        .where('id', '=', id)
        .where('status', 'in', ['PENDING', 'PROVISIONING'])
        .where((eb) => eb.or([eb('provisioner', 'is', null), eb('provisioner', '=', replicaId), eb('provisioner', 'not in', live)]))
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) === 0) return undefined;
      if (patch.labels) await this.writeLabels(trx, id, patch.labels);
      return rowToSandbox(await trx.selectFrom('sandboxes').selectAll().where('id', '=', id).executeTakeFirstOrThrow());
    });
    if (claimed) for (const listener of this.updateListeners) listener(claimed);
    return claimed;
  }

  async insertRegistryCredential(credential: RegistryCredentialRecord): Promise<void> {
    await this.db.insertInto('registry_credentials').values(credentialToRow(credential)).execute();
  }

  async getRegistryCredential(id: string): Promise<RegistryCredentialRecord | undefined> {
    const row = await this.db.selectFrom('registry_credentials').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToCredential(row) : undefined;
  }

  async listRegistryCredentials(userId: string, teamIds: readonly string[]): Promise<RegistryCredentialRecord[]> {
    let query = this.db.selectFrom('registry_credentials').selectAll();
    query = teamIds.length > 0
      ? query.where((eb) => eb.or([eb('user_id', '=', userId), eb('team_id', 'in', [...teamIds])]))
      : query.where('user_id', '=', userId);
    const rows = await query.orderBy('created_at').orderBy('id').execute();
    return rows.map(rowToCredential);
  }

  async deleteRegistryCredential(id: string): Promise<boolean> {
    const result = await this.db.deleteFrom('registry_credentials').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async insertWebhookEndpoint(e: WebhookEndpointRecord): Promise<void> {
    await this.db
      .insertInto('webhook_endpoints')
      .values({
        id: e.id,
        user_id: e.userId,
        team_id: e.teamId,
        url: e.url,
        event_types: JSON.stringify(e.eventTypes),
        secret: e.secret,
        enabled: e.enabled ? 1 : 0,
        created_at: e.createdAt,
      })
      .execute();
  }

  async getWebhookEndpoint(id: string): Promise<WebhookEndpointRecord | undefined> {
    const row = await this.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToWebhookEndpoint(row) : undefined;
  }

  async listWebhookEndpoints(userId: string, teamIds: readonly string[]): Promise<WebhookEndpointRecord[]> {
    let query = this.db.selectFrom('webhook_endpoints').selectAll();
    query = teamIds.length > 0
      ? query.where((eb) => eb.or([eb('user_id', '=', userId), eb('team_id', 'in', [...teamIds])]))
      : query.where('user_id', '=', userId);
    const rows = await query.orderBy('created_at').orderBy('id').execute();
    return rows.map(rowToWebhookEndpoint);
  }

  async findWebhookEndpoints(userIds: readonly string[], teamIds: readonly string[]): Promise<WebhookEndpointRecord[]> {
    if (userIds.length === 0 && teamIds.length === 0) return [];
    const rows = await this.db
      .selectFrom('webhook_endpoints')
      .selectAll()
      .where('enabled', '=', 1)
      .where((eb) => {
        const ors = [];
        if (userIds.length > 0) ors.push(eb.and([eb('team_id', 'is', null), eb('user_id', 'in', [...userIds])]));
        if (teamIds.length > 0) ors.push(eb('team_id', 'in', [...teamIds]));
        return eb.or(ors);
      })
      .orderBy('id')
      .execute();
    return rows.map(rowToWebhookEndpoint);
  }

  async deleteWebhookEndpoint(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('webhook_deliveries').where('endpoint_id', '=', id).execute();
      const result = await trx.deleteFrom('webhook_endpoints').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  async insertWebhookDeliveries(deliveries: readonly WebhookDeliveryRecord[]): Promise<void> {
    if (deliveries.length === 0) return;
    const rows = deliveries.map((d) => ({
      id: d.id,
      endpoint_id: d.endpointId,
      event_id: d.eventId,
      event_type: d.eventType,
      payload: d.payload,
      status: d.status,
      attempts: d.attempts,
      attempt_log: JSON.stringify(d.attemptLog),
      last_status_code: d.lastStatusCode,
      last_error: d.lastError,
      next_attempt_at: d.nextAttemptAt,
      claimed_by: d.claimedBy,
      delivered_at: d.deliveredAt,
      created_at: d.createdAt,
    }));
    await this.db.transaction().execute(async (trx) => {
      for (let i = 0; i < rows.length; i += 200) await trx.insertInto('webhook_deliveries').values(rows.slice(i, i + 200)).execute();
    });
  }

  async getWebhookDelivery(id: string): Promise<WebhookDeliveryRecord | undefined> {
    const row = await this.db.selectFrom('webhook_deliveries').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToWebhookDelivery(row) : undefined;
  }

  async listWebhookDeliveries(endpointId: string, limit: number): Promise<WebhookDeliveryRecord[]> {
    const rows = await this.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('endpoint_id', '=', endpointId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.map(rowToWebhookDelivery);
  }

  async dueWebhookDeliveries(now: string, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('webhook_deliveries')
      .select('id')
      .where('status', 'in', ['pending', 'delivering'])
      .where('next_attempt_at', '<=', now)
      .orderBy('next_attempt_at')
      .limit(limit)
      .execute();
    return rows.map((r) => r.id);
  }

  async claimWebhookDelivery(id: string, replicaId: string, now: string, holdUntil: string): Promise<WebhookDeliveryRecord | undefined> {
    // One statement: of concurrent claimers only one sees the row still due.
    const result = await this.db
      .updateTable('webhook_deliveries')
      .set({ status: 'delivering', claimed_by: replicaId, next_attempt_at: holdUntil })
      .where('id', '=', id)
      .where('status', 'in', ['pending', 'delivering'])
      .where('next_attempt_at', '<=', now)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) return undefined;
    const row = await this.getWebhookDelivery(id);
    return row?.claimedBy === replicaId ? row : undefined;
  }

  async purgeWebhookDeliveries(before: string, limit: number): Promise<number> {
    const rows = await this.db
      .selectFrom('webhook_deliveries')
      .select('id')
      .where('status', 'in', ['delivered', 'failed'])
      .where('created_at', '<', before)
      .limit(limit)
      .execute();
    if (rows.length === 0) return 0;
    await this.db.deleteFrom('webhook_deliveries').where('id', 'in', rows.map((r) => r.id)).execute();
    return rows.length;
  }

  async updateWebhookDelivery(id: string, patch: WebhookDeliveryPatch, replicaId: string): Promise<WebhookDeliveryRecord | undefined> {
    const result = await this.db
      .updateTable('webhook_deliveries')
      .set(webhookDeliveryPatchValues(patch))
      .where('id', '=', id)
      .where('claimed_by', '=', replicaId)
      .where('status', '=', 'delivering')
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) return undefined;
    return this.getWebhookDelivery(id);
  }

  async insertImageBuild(b: ImageBuildRecord): Promise<void> {
    await this.db
      .insertInto('image_builds')
      .values({
        id: b.id,
        user_id: b.userId,
        team_id: b.teamId,
        image_name: b.imageName,
        image_tag: b.imageTag,
        dockerfile_path: b.dockerfilePath,
        full_image_path: b.fullImagePath,
        status: b.status,
        context_bytes: b.contextBytes,
        failed_step: b.failedStep,
        error_message: b.errorMessage,
        created_at: b.createdAt,
        started_at: b.startedAt,
        completed_at: b.completedAt,
        replica_id: b.replicaId,
        visibility: b.visibility,
      })
      .execute();
  }

  async getImageBuild(id: string): Promise<ImageBuildRecord | undefined> {
    const row = await this.db.selectFrom('image_builds').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToImageBuild(row) : undefined;
  }

  async updateImageBuild(id: string, patch: ImageBuildPatch, expectStatus?: readonly ImageBuildStatus[]): Promise<ImageBuildRecord | undefined> {
    const values: Updateable<ImageBuildsTable> = {};
    if (patch.status !== undefined) values.status = patch.status;
    if (patch.contextBytes !== undefined) values.context_bytes = patch.contextBytes;
    if (patch.failedStep !== undefined) values.failed_step = patch.failedStep;
    if (patch.errorMessage !== undefined) values.error_message = patch.errorMessage;
    if (patch.startedAt !== undefined) values.started_at = patch.startedAt;
    if (patch.completedAt !== undefined) values.completed_at = patch.completedAt;
    if (patch.replicaId !== undefined) values.replica_id = patch.replicaId;
    let query = this.db.updateTable('image_builds').set(values).where('id', '=', id);
    if (expectStatus !== undefined) query = query.where('status', 'in', [...expectStatus]);
    const result = await query.executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) return undefined;
    return this.getImageBuild(id);
  }

  async listImageBuilds(userId: string, teamId: string | null, page: { offset: number; limit: number }): Promise<{ rows: ImageBuildRecord[]; total: number }> {
    const base = teamId === null
      ? this.db.selectFrom('image_builds').where('user_id', '=', userId).where('team_id', 'is', null)
      : this.db.selectFrom('image_builds').where('team_id', '=', teamId);
    const count = await base.select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow();
    const rows = await base.selectAll().orderBy('created_at', 'desc').orderBy('id').limit(page.limit).offset(page.offset).execute();
    return { rows: rows.map(rowToImageBuild), total: Number(count.n) };
  }

  async listImageBuildsByStatus(statuses: readonly ImageBuildStatus[]): Promise<ImageBuildRecord[]> {
    const rows = await this.db.selectFrom('image_builds').selectAll().where('status', 'in', [...statuses]).orderBy('created_at').limit(10_000).execute();
    return rows.map(rowToImageBuild);
  }

  async putImageArtifact(a: ImageArtifactRecord): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('image_artifacts').where('full_image_path', '=', a.fullImagePath).execute();
      await trx
        .insertInto('image_artifacts')
        .values({
          id: a.id,
          user_id: a.userId,
          team_id: a.teamId,
          image_name: a.imageName,
          image_tag: a.imageTag,
          full_image_path: a.fullImagePath,
          runtime_ref: a.runtimeRef,
          visibility: a.visibility,
          size_bytes: a.sizeBytes,
          build_id: a.buildId,
          created_at: a.createdAt,
          pushed_at: a.pushedAt,
        })
        .execute();
    });
  }

  async getImageArtifactByPath(fullImagePath: string): Promise<ImageArtifactRecord | undefined> {
    const row = await this.db.selectFrom('image_artifacts').selectAll().where('full_image_path', '=', fullImagePath).executeTakeFirst();
    return row ? rowToImageArtifact(row) : undefined;
  }

  async listImageArtifacts(
    userId: string,
    teamId: string | null,
    page: { offset: number; limit: number; search: string | null },
  ): Promise<{ rows: ImageArtifactRecord[]; total: number }> {
    let base = teamId === null
      ? this.db.selectFrom('image_artifacts').where('user_id', '=', userId).where('team_id', 'is', null)
      : this.db.selectFrom('image_artifacts').where('team_id', '=', teamId);
    if (page.search !== null && page.search !== '') {
      // instr() (SQLite) and strpos() (PostgreSQL) differ; a LIKE with the wildcards escaped works in both.
      const pattern = `%${page.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      base = base.where(sql<boolean>`image_name like ${pattern} escape '\\'`);
    }
    const count = await base.select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirstOrThrow();
    const rows = await base.selectAll().orderBy('image_name').orderBy('image_tag').limit(page.limit).offset(page.offset).execute();
    return { rows: rows.map(rowToImageArtifact), total: Number(count.n) };
  }

  async deleteImageArtifact(id: string): Promise<boolean> {
    const result = await this.db.deleteFrom('image_artifacts').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }
  /** The same database, typed with the networking tables of migration 0003. */
  private get net(): Kysely<NetworkDatabase> {
    return this.db as unknown as Kysely<NetworkDatabase>;
  }

  async insertExposure(e: ExposureRecord): Promise<void> {
    await this.net
      .insertInto('exposures')
      .values({
        id: e.id,
        sandbox_id: e.sandboxId,
        user_id: e.userId,
        port: e.port,
        name: e.name,
        protocol: e.protocol,
        external_port: e.externalPort,
        access_token: e.accessToken,
        created_at: e.createdAt,
      })
      .execute();
  }

  async getExposure(id: string): Promise<ExposureRecord | undefined> {
    const row = await this.net.selectFrom('exposures').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToExposure(row) : undefined;
  }

  async listExposures(sandboxIds: readonly string[] | null): Promise<ExposureRecord[]> {
    if (sandboxIds !== null && sandboxIds.length === 0) return [];
    let query = this.net.selectFrom('exposures').selectAll();
    if (sandboxIds !== null) query = query.where('sandbox_id', 'in', [...sandboxIds]);
    const rows = await query.orderBy('created_at').orderBy('id').execute();
    return rows.map(rowToExposure);
  }

  async deleteExposure(id: string): Promise<boolean> {
    const result = await this.net.deleteFrom('exposures').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async purgeNetworkOfEndedSandboxes(now: string): Promise<{ exposureIds: string[]; sshSessionIds: string[] }> {
    return this.net.transaction().execute(async (trx) => {
      const live = trx.selectFrom('sandboxes').select('id').where('status', 'not in', [...TERMINAL_STATUSES]);
      const exposures = await trx.selectFrom('exposures').select('id').where('sandbox_id', 'not in', live).execute();
      const sessions = await trx
        .selectFrom('ssh_sessions')
        .select('id')
        .where((eb) => eb.or([eb('sandbox_id', 'not in', live), eb('expires_at', '<=', now)]))
        .execute();
      const exposureIds = exposures.map((r) => r.id);
      const sshSessionIds = sessions.map((r) => r.id);
      if (exposureIds.length > 0) await trx.deleteFrom('exposures').where('id', 'in', exposureIds).execute();
      if (sshSessionIds.length > 0) {
        await trx.deleteFrom('ssh_session_keys').where('session_id', 'in', sshSessionIds).execute();
        await trx.deleteFrom('ssh_sessions').where('id', 'in', sshSessionIds).execute();
      }
      return { exposureIds, sshSessionIds };
    });
  }

  async purgeRevokedNetworkAccess(): Promise<{ sshSessionIds: string[]; tunnelIds: string[] }> {
    return this.net.transaction().execute(async (trx) => {
      const liveKeys = trx.selectFrom('api_keys').select('id').where('revoked_at', 'is', null);
      const users = trx.selectFrom('users').select('id');
      const sessions = await trx
        .selectFrom('ssh_sessions')
        .select('id')
        .where('api_key_id', 'is not', null)
        .where('api_key_id', 'not in', liveKeys)
        .execute();
      const tunnels = await trx
        .selectFrom('tunnels')
        .select('id')
        .where((eb) => eb.or([eb.and([eb('api_key_id', 'is not', null), eb('api_key_id', 'not in', liveKeys)]), eb('user_id', 'not in', users)]))
        .execute();
      const sshSessionIds = sessions.map((r) => r.id);
      const tunnelIds = tunnels.map((r) => r.id);
      if (sshSessionIds.length > 0) {
        await trx.deleteFrom('ssh_session_keys').where('session_id', 'in', sshSessionIds).execute();
        await trx.deleteFrom('ssh_sessions').where('id', 'in', sshSessionIds).execute();
      }
      if (tunnelIds.length > 0) await trx.deleteFrom('tunnels').where('id', 'in', tunnelIds).execute();
      return { sshSessionIds, tunnelIds };
    });
  }

  async insertSshSession(s: SshSessionRecord): Promise<void> {
    await this.net
      .insertInto('ssh_sessions')
      .values({
        id: s.id,
        sandbox_id: s.sandboxId,
        user_id: s.userId,
        exposure_id: s.exposureId,
        ttl_seconds: s.ttlSeconds,
        created_at: s.createdAt,
        expires_at: s.expiresAt,
        api_key_id: s.apiKeyId,
      })
      .execute();
  }

  async getSshSession(id: string): Promise<SshSessionRecord | undefined> {
    const row = await this.net.selectFrom('ssh_sessions').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToSshSession(row) : undefined;
  }

  async deleteSshSession(id: string): Promise<boolean> {
    return this.net.transaction().execute(async (trx) => {
      await trx.deleteFrom('ssh_session_keys').where('session_id', '=', id).execute();
      const result = await trx.deleteFrom('ssh_sessions').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  async upsertSshKey(key: SshKeyRecord): Promise<void> {
    await this.net
      .insertInto('ssh_session_keys')
      .values({ session_id: key.sessionId, public_key: key.publicKey, expires_at: key.expiresAt })
      .onConflict((oc) => oc.columns(['session_id', 'public_key']).doUpdateSet({ expires_at: key.expiresAt }))
      .execute();
  }

  async listSshKeys(sessionId: string, now: string): Promise<SshKeyRecord[]> {
    const rows = await this.net
      .selectFrom('ssh_session_keys')
      .selectAll()
      .where('session_id', '=', sessionId)
      .where('expires_at', '>', now)
      .execute();
    return rows.map((r) => ({ sessionId: r.session_id, publicKey: r.public_key, expiresAt: r.expires_at }));
  }

  async insertTunnel(t: TunnelRecord): Promise<void> {
    await this.net.insertInto('tunnels').values(tunnelToRow(t)).execute();
  }

  async getTunnel(id: string): Promise<TunnelRecord | undefined> {
    const row = await this.net.selectFrom('tunnels').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? rowToTunnel(row) : undefined;
  }

  async listTunnels(filter: TunnelFilter, page: number, perPage: number): Promise<{ tunnels: TunnelRecord[]; total: number }> {
    let query = this.net.selectFrom('tunnels').selectAll();
    if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
    if (filter.teamId !== undefined) query = query.where('team_id', '=', filter.teamId);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
    // Labels are a JSON array per row; tunnels per user are few, so the label match runs here.
    const wanted = filter.labels ?? [];
    const matches = rows.map(rowToTunnel).filter((t) => wanted.every((label) => t.labels.includes(label)));
    return { tunnels: matches.slice((page - 1) * perPage, page * perPage), total: matches.length };
  }

  async updateTunnel(id: string, patch: TunnelPatch): Promise<TunnelRecord | undefined> {
    const set: Partial<TunnelsTable> = {};
    if (patch.status !== undefined) set.status = patch.status;
    if (patch.connectedAt !== undefined) set.connected_at = patch.connectedAt;
    if (patch.terminatedAt !== undefined) set.terminated_at = patch.terminatedAt;
    if (Object.keys(set).length > 0) await this.net.updateTable('tunnels').set(set).where('id', '=', id).execute();
    return this.getTunnel(id);
  }

  async deleteTunnel(id: string): Promise<boolean> {
    const result = await this.net.deleteFrom('tunnels').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async expireTunnels(now: string): Promise<string[]> {
    return this.net.transaction().execute(async (trx) => {
      const rows = await trx.selectFrom('tunnels').select('id').where('status', '!=', 'expired').where('expires_at', '<=', now).execute();
      const ids = rows.map((r) => r.id);
      if (ids.length > 0) await trx.updateTable('tunnels').set({ status: 'expired' }).where('id', 'in', ids).execute();
      return ids;
    });
  }
}

function rowToExposure(row: Selectable<ExposuresTable>): ExposureRecord {
  return {
    id: row.id,
    sandboxId: row.sandbox_id,
    userId: row.user_id,
    port: Number(row.port),
    name: row.name,
    protocol: row.protocol as ExposureProtocol,
    externalPort: row.external_port === null ? null : Number(row.external_port),
    accessToken: row.access_token,
    createdAt: row.created_at,
  };
}

function rowToSshSession(row: Selectable<SshSessionsTable>): SshSessionRecord {
  return {
    id: row.id,
    sandboxId: row.sandbox_id,
    userId: row.user_id,
    exposureId: row.exposure_id,
    ttlSeconds: Number(row.ttl_seconds),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    apiKeyId: row.api_key_id,
  };
}

function tunnelToRow(t: TunnelRecord): TunnelsTable {
  return {
    id: t.id,
    user_id: t.userId,
    team_id: t.teamId,
    name: t.name,
    local_port: t.localPort,
    labels: JSON.stringify(t.labels),
    http_user: t.httpUser,
    http_password_hash: t.httpPasswordHash,
    binding_secret_hash: t.bindingSecretHash,
    status: t.status,
    created_at: t.createdAt,
    connected_at: t.connectedAt,
    expires_at: t.expiresAt,
    terminated_at: t.terminatedAt,
    api_key_id: t.apiKeyId,
  };
}

function rowToTunnel(row: Selectable<TunnelsTable>): TunnelRecord {
  return {
    id: row.id,
    userId: row.user_id,
    teamId: row.team_id,
    name: row.name,
    localPort: Number(row.local_port),
    labels: parseJson<string[]>(row.labels) ?? [],
    httpUser: row.http_user,
    httpPasswordHash: row.http_password_hash,
    bindingSecretHash: row.binding_secret_hash,
    status: row.status as TunnelStatus,
    createdAt: row.created_at,
    connectedAt: row.connected_at,
    expiresAt: row.expires_at,
    terminatedAt: row.terminated_at,
    apiKeyId: row.api_key_id,
  };
}

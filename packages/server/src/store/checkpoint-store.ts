import type { Kysely, Selectable, SelectQueryBuilder, Updateable } from 'kysely';
import type { CheckpointFilter, CheckpointPatch, CheckpointRecord, CheckpointState } from '../records/checkpoint-records.js';
import type { CheckpointsTable, Database } from './schema.js';

/** The checkpoint queries of `KyselyStore` (migration 0015), over the same connection. */

function rowToCheckpoint(row: Selectable<CheckpointsTable>): CheckpointRecord {
  return {
    id: row.id,
    sandboxId: row.sandbox_id,
    parentId: row.parent_id,
    depth: Number(row.depth),
    userId: row.user_id,
    teamId: row.team_id,
    state: row.state as CheckpointState,
    dockerImage: row.docker_image,
    diskSizeGb: Number(row.disk_size_gb),
    registryCredentialsId: row.registry_credentials_id,
    runtimeDriver: row.runtime_driver,
    runtimeOwner: row.runtime_owner,
    replicaId: row.replica_id,
    runtimeRef: row.runtime_ref,
    sizeBytes: Number(row.size_bytes),
    memory: Number(row.memory) === 1,
    error: row.error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    expiresAt: row.expires_at,
  };
}

function checkpointToRow(c: CheckpointRecord): CheckpointsTable {
  return {
    id: c.id,
    sandbox_id: c.sandboxId,
    parent_id: c.parentId,
    depth: c.depth,
    user_id: c.userId,
    team_id: c.teamId,
    state: c.state,
    docker_image: c.dockerImage,
    disk_size_gb: c.diskSizeGb,
    registry_credentials_id: c.registryCredentialsId,
    runtime_driver: c.runtimeDriver,
    runtime_owner: c.runtimeOwner,
    replica_id: c.replicaId,
    runtime_ref: c.runtimeRef,
    size_bytes: c.sizeBytes,
    memory: c.memory ? 1 : 0,
    error: c.error,
    created_at: c.createdAt,
    updated_at: c.updatedAt,
    expires_at: c.expiresAt,
  };
}

function filtered<O>(query: SelectQueryBuilder<Database, 'checkpoints', O>, filter: CheckpointFilter): SelectQueryBuilder<Database, 'checkpoints', O> {
  let q = query;
  if (filter.sandboxId !== undefined) q = q.where('sandbox_id', '=', filter.sandboxId);
  if (filter.ids !== undefined) q = filter.ids.length === 0 ? q.where('id', 'is', null) : q.where('id', 'in', [...filter.ids]);
  if (filter.userId !== undefined) q = q.where('user_id', '=', filter.userId);
  if (filter.states !== undefined) q = filter.states.length === 0 ? q.where('id', 'is', null) : q.where('state', 'in', [...filter.states]);
  if (filter.runtimeOwner !== undefined) q = q.where('runtime_owner', '=', filter.runtimeOwner);
  if (filter.expiredBefore !== undefined) q = q.where('expires_at', 'is not', null).where('expires_at', '<', filter.expiredBefore);
  const visible = filter.visibleTo;
  if (visible !== undefined) {
    q = q.where((eb) =>
      visible.teamIds.length === 0 ? eb('user_id', '=', visible.userId) : eb.or([eb('user_id', '=', visible.userId), eb('team_id', 'in', [...visible.teamIds])]),
    );
  }
  return q;
}

export async function insertCheckpoint(db: Kysely<Database>, checkpoint: CheckpointRecord): Promise<void> {
  await db.insertInto('checkpoints').values(checkpointToRow(checkpoint)).execute();
}

export async function getCheckpoint(db: Kysely<Database>, id: string): Promise<CheckpointRecord | undefined> {
  const row = await db.selectFrom('checkpoints').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? rowToCheckpoint(row) : undefined;
}

export async function listCheckpoints(
  db: Kysely<Database>,
  filter: CheckpointFilter,
  page: number,
  perPage: number,
): Promise<{ checkpoints: CheckpointRecord[]; total: number }> {
  const rows = await filtered(db.selectFrom('checkpoints').selectAll(), filter)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(perPage)
    .offset((page - 1) * perPage)
    .execute();
  const count = await filtered(db.selectFrom('checkpoints').select((eb) => eb.fn.countAll().as('n')), filter).executeTakeFirst();
  return { checkpoints: rows.map(rowToCheckpoint), total: Number(count?.n ?? 0) };
}

export async function updateCheckpoint(
  db: Kysely<Database>,
  id: string,
  patch: CheckpointPatch,
  expectStates?: readonly CheckpointState[],
): Promise<CheckpointRecord | undefined> {
  const values: Updateable<CheckpointsTable> = { updated_at: new Date().toISOString() };
  if (patch.state !== undefined) values.state = patch.state;
  if (patch.parentId !== undefined) values.parent_id = patch.parentId;
  if (patch.depth !== undefined) values.depth = patch.depth;
  if (patch.runtimeRef !== undefined) values.runtime_ref = patch.runtimeRef;
  if (patch.sizeBytes !== undefined) values.size_bytes = patch.sizeBytes;
  if (patch.error !== undefined) values.error = patch.error;
  let query = db.updateTable('checkpoints').set(values).where('id', '=', id);
  if (expectStates !== undefined) query = query.where('state', 'in', [...expectStates]);
  const result = await query.executeTakeFirst();
  if (Number(result.numUpdatedRows) === 0) return undefined;
  return getCheckpoint(db, id);
}

export async function deleteCheckpoint(db: Kysely<Database>, id: string): Promise<boolean> {
  const result = await db.deleteFrom('checkpoints').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/** Bytes stored in checkpoints of a user (or a team), in every state but FAILED: what counts against a disk quota. */
export async function checkpointBytes(db: Kysely<Database>, scope: 'user' | 'team', subjectId: string): Promise<number> {
  const row = await db
    .selectFrom('checkpoints')
    .select((eb) => eb.fn.sum<number | string | null>('size_bytes').as('bytes'))
    .where(scope === 'user' ? 'user_id' : 'team_id', '=', subjectId)
    .where('state', '!=', 'FAILED')
    .executeTakeFirst();
  return Number(row?.bytes ?? 0);
}

/** Checkpoints of deployment `runtimeOwner`, counted by state. */
export async function countCheckpoints(db: Kysely<Database>, runtimeOwner: string): Promise<Array<{ state: CheckpointState; count: number }>> {
  const rows = await db
    .selectFrom('checkpoints')
    .select((eb) => ['state', eb.fn.countAll().as('n')])
    .where('runtime_owner', '=', runtimeOwner)
    .groupBy('state')
    .execute();
  return rows.map((r) => ({ state: r.state as CheckpointState, count: Number(r.n) }));
}

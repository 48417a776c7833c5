import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely';

/**
 * The store's schema, one migration per step, applied in name order. Column types are
 * chosen to mean the same thing in SQLite and PostgreSQL.
 */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<unknown>): Promise<void> {
      const double = sql`double precision`;
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('email', 'text')
        .addColumn('is_admin', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('teams')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('team_members')
        .addColumn('team_id', 'text', (c) => c.notNull().references('teams.id').onDelete('cascade'))
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('team_members_pk', ['team_id', 'user_id'])
        .execute();
      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('prefix', 'text', (c) => c.notNull())
        .addColumn('key_hash', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('last_used_at', 'text')
        .addColumn('revoked_at', 'text')
        .execute();
      await db.schema
        .createTable('sandboxes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('docker_image', 'text', (c) => c.notNull())
        .addColumn('start_command', 'text')
        .addColumn('cpu_cores', double, (c) => c.notNull())
        .addColumn('memory_gb', double, (c) => c.notNull())
        .addColumn('disk_size_gb', double, (c) => c.notNull())
        .addColumn('gpu_count', 'integer', (c) => c.notNull())
        .addColumn('gpu_type', 'text')
        .addColumn('vm', 'integer', (c) => c.notNull())
        .addColumn('network_access', 'integer', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('timeout_minutes', 'integer', (c) => c.notNull())
        .addColumn('idle_timeout_minutes', 'integer')
        .addColumn('termination_reason', 'text')
        .addColumn('environment_vars', 'text')
        .addColumn('secrets', 'text')
        .addColumn('advanced_configs', 'text')
        .addColumn('labels', 'text', (c) => c.notNull())
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('team_id', 'text')
        .addColumn('region', 'text')
        .addColumn('registry_credentials_id', 'text')
        .addColumn('guaranteed', 'integer', (c) => c.notNull())
        .addColumn('idempotency_key', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('terminated_at', 'text')
        .addColumn('last_activity_at', 'text')
        .addColumn('exit_code', 'integer')
        .addColumn('error_type', 'text')
        .addColumn('error_message', 'text')
        .addColumn('runtime_driver', 'text')
        .addColumn('runtime_id', 'text')
        .execute();
      // Listings are `order by created_at desc, id desc`: ending each index in (created_at, id) lets
      // both databases read a page straight off the index instead of sorting every match.
      await db.schema.createIndex('sandboxes_user_created').on('sandboxes').columns(['user_id', 'created_at', 'id']).execute();
      await db.schema.createIndex('sandboxes_team_created').on('sandboxes').columns(['team_id', 'created_at', 'id']).execute();
      await db.schema.createIndex('sandboxes_created').on('sandboxes').columns(['created_at', 'id']).execute();
      await db.schema.createIndex('sandboxes_status').on('sandboxes').column('status').execute();
      await db.schema
        .createIndex('sandboxes_idempotency')
        .on('sandboxes')
        .columns(['user_id', 'idempotency_key'])
        .unique()
        .execute();
      await db.schema
        .createTable('sandbox_labels')
        .addColumn('sandbox_id', 'text', (c) => c.notNull().references('sandboxes.id').onDelete('cascade'))
        .addColumn('label', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('sandbox_labels_pk', ['sandbox_id', 'label'])
        .execute();
      await db.schema.createIndex('sandbox_labels_label').on('sandbox_labels').columns(['label', 'sandbox_id']).execute();
    },
  },
};

migrations['0002_owner_credentials'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('sandboxes').addColumn('runtime_owner', 'text').execute();
    await db.schema.createIndex('sandboxes_owner_status').on('sandboxes').columns(['runtime_owner', 'status']).execute();
    await db.schema.createIndex('sandboxes_terminated').on('sandboxes').column('terminated_at').execute();
    await db.schema
      .createTable('registry_credentials')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
      .addColumn('team_id', 'text')
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('server', 'text', (c) => c.notNull())
      .addColumn('username', 'text', (c) => c.notNull())
      .addColumn('password', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('registry_credentials_user').on('registry_credentials').column('user_id').execute();
  },
};

migrations['0003_network'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('exposures')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('sandbox_id', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('port', 'integer', (c) => c.notNull())
      .addColumn('name', 'text')
      .addColumn('protocol', 'text', (c) => c.notNull())
      .addColumn('external_port', 'integer')
      .addColumn('access_token', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('exposures_sandbox').on('exposures').column('sandbox_id').execute();
    await db.schema
      .createTable('ssh_sessions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('sandbox_id', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('exposure_id', 'text', (c) => c.notNull())
      .addColumn('ttl_seconds', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('ssh_sessions_sandbox').on('ssh_sessions').column('sandbox_id').execute();
    await db.schema
      .createTable('ssh_session_keys')
      .addColumn('session_id', 'text', (c) => c.notNull().references('ssh_sessions.id').onDelete('cascade'))
      .addColumn('public_key', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('ssh_session_keys_pk', ['session_id', 'public_key'])
      .execute();
    await db.schema
      .createTable('tunnels')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('team_id', 'text')
      .addColumn('name', 'text')
      .addColumn('local_port', 'integer', (c) => c.notNull())
      .addColumn('labels', 'text', (c) => c.notNull())
      .addColumn('http_user', 'text')
      .addColumn('http_password_hash', 'text')
      .addColumn('binding_secret_hash', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('connected_at', 'text')
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('terminated_at', 'text')
      .execute();
    await db.schema.createIndex('tunnels_user_created').on('tunnels').columns(['user_id', 'created_at', 'id']).execute();
    await db.schema.createIndex('tunnels_team_created').on('tunnels').columns(['team_id', 'created_at', 'id']).execute();
  },
};

migrations['0004_owner_updated'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // The reconciler reads this instance's rows changed since its previous pass.
    await db.schema.createIndex('sandboxes_owner_updated').on('sandboxes').columns(['runtime_owner', 'updated_at']).execute();
  },
};

migrations['0005_access_quotas'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // The API key an SSH session or tunnel was created with: revoking the key ends them.
    await db.schema.alterTable('ssh_sessions').addColumn('api_key_id', 'text').execute();
    await db.schema.alterTable('tunnels').addColumn('api_key_id', 'text').execute();
    // Quota overrides per user or team; a null column means "the server's default".
    await db.schema
      .createTable('quotas')
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('subject_id', 'text', (c) => c.notNull())
      .addColumn('max_sandboxes', 'integer')
      .addColumn('cpu_cores', sql`double precision`)
      .addColumn('memory_gb', sql`double precision`)
      .addColumn('disk_gb', sql`double precision`)
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('quotas_pk', ['scope', 'subject_id'])
      .execute();
    await db.schema.createIndex('sandboxes_user_status').on('sandboxes').columns(['user_id', 'status']).execute();
    await db.schema.createIndex('sandboxes_team_status').on('sandboxes').columns(['team_id', 'status']).execute();
  },
};

migrations['0006_egress_policy'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // The egress policy (JSON arrays; null = no list) and its generations. SQLite adds one column per statement.
    await db.schema.alterTable('sandboxes').addColumn('network_allowlist', 'text').execute();
    await db.schema.alterTable('sandboxes').addColumn('network_denylist', 'text').execute();
    await db.schema.alterTable('sandboxes').addColumn('egress_generation', 'integer', (c) => c.notNull().defaultTo(1)).execute();
    await db.schema.alterTable('sandboxes').addColumn('egress_applied_generation', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    // Earlier rows: `network_access: false` is the empty allow list; what started was enforced as created.
    await sql`update sandboxes set network_allowlist = '[]' where network_access = 0`.execute(db);
    await sql`update sandboxes set egress_applied_generation = 1 where status not in ('PENDING', 'PROVISIONING')`.execute(db);
  },
};

migrations['0007_admission_deadline'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // When a create still waiting for capacity ends in ERROR (ADMISSION_TIMEOUT); null: no deadline.
    await db.schema.alterTable('sandboxes').addColumn('admission_deadline', 'text').execute();
  },
};

migrations['0008_replicas'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // Replicas' heartbeats: a replica is live while expires_at (ms since the epoch, the database's clock) is ahead.
    await db.schema
      .createTable('replicas')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('instance_id', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', sql`double precision`, (c) => c.notNull())
      // Where the process runs, so a restart on the same host can tell a dead predecessor (its pid is gone).
      .addColumn('host', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('pid', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    // Named leases (the reconciler's leader lease), held by one replica until expires_at.
    await db.schema
      .createTable('leases')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('holder', 'text', (c) => c.notNull())
      .addColumn('expires_at', sql`double precision`, (c) => c.notNull())
      .execute();
    // The replica that holds a PENDING/PROVISIONING sandbox's provisioning work; null: nobody.
    await db.schema.alterTable('sandboxes').addColumn('provisioner', 'text').execute();
  },
};

migrations['0009_kubernetes_job_id'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // Prime's kubernetesJobId: the Pod that runs the sandbox on the kubernetes driver; null elsewhere.
    await db.schema.alterTable('sandboxes').addColumn('kubernetes_job_id', 'text').execute();
  },
};

migrations['0010_image_builds'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // Dockerfile builds (one row per build) and the images they made (one row per owner, name and tag).
    await db.schema
      .createTable('image_builds')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('team_id', 'text')
      .addColumn('image_name', 'text', (c) => c.notNull())
      .addColumn('image_tag', 'text', (c) => c.notNull())
      .addColumn('dockerfile_path', 'text', (c) => c.notNull())
      .addColumn('full_image_path', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('context_bytes', sql`bigint`)
      .addColumn('failed_step', 'text')
      .addColumn('error_message', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('completed_at', 'text')
      // The replica that holds the build's uploaded context and runs it; null until the upload.
      .addColumn('replica_id', 'text')
      .execute();
    await db.schema.createIndex('image_builds_status').on('image_builds').column('status').execute();
    await db.schema.createIndex('image_builds_user').on('image_builds').columns(['user_id', 'created_at']).execute();
    await db.schema
      .createTable('image_artifacts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('team_id', 'text')
      .addColumn('image_name', 'text', (c) => c.notNull())
      .addColumn('image_tag', 'text', (c) => c.notNull())
      .addColumn('full_image_path', 'text', (c) => c.notNull().unique())
      .addColumn('runtime_ref', 'text', (c) => c.notNull())
      .addColumn('visibility', 'text', (c) => c.notNull())
      .addColumn('size_bytes', sql`bigint`, (c) => c.notNull())
      .addColumn('build_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('pushed_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('image_artifacts_user').on('image_artifacts').columns(['user_id', 'image_name', 'image_tag']).execute();
  },
};

migrations['0011_paused'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // Pause and resume: when a PAUSED sandbox was paused, and the time it spent paused before
    // (its timeout_minutes deadline moves by that much).
    await db.schema.alterTable('sandboxes').addColumn('paused_at', 'text').execute();
    await db.schema.alterTable('sandboxes').addColumn('paused_ms', sql`double precision`, (c) => c.notNull().defaultTo(0)).execute();
  },
};

migrations['0012_sandbox_events'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // A sandbox's timeline: lifecycle changes, execs, transfers, exposures, SSH sessions, policy
    // changes. Ids sort in recording order; events are deleted with their sandbox's row.
    await db.schema
      .createTable('sandbox_events')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('sandbox_id', 'text', (c) => c.notNull())
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('user_id', 'text')
      .addColumn('key_id', 'text')
      .addColumn('data', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('sandbox_events_sandbox').on('sandbox_events').columns(['sandbox_id', 'id']).execute();
  },
};

migrations['0014_webhooks'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // Webhook endpoints (a user's or a team's) and their deliveries, one row per event and
    // endpoint, with every attempt (`attempt_log`, JSON). A pending delivery's `next_attempt_at`
    // is when it is due; a delivering one's is when its replica's hold lapses.
    await db.schema
      .createTable('webhook_endpoints')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('team_id', 'text')
      .addColumn('url', 'text', (c) => c.notNull())
      .addColumn('event_types', 'text', (c) => c.notNull())
      .addColumn('secret', 'text', (c) => c.notNull())
      .addColumn('enabled', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('webhook_endpoints_user').on('webhook_endpoints').column('user_id').execute();
    await db.schema.createIndex('webhook_endpoints_team').on('webhook_endpoints').column('team_id').execute();
    await db.schema
      .createTable('webhook_deliveries')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('endpoint_id', 'text', (c) => c.notNull())
      .addColumn('event_id', 'text', (c) => c.notNull())
      .addColumn('event_type', 'text', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('attempt_log', 'text', (c) => c.notNull())
      .addColumn('last_status_code', 'integer')
      .addColumn('last_error', 'text')
      .addColumn('next_attempt_at', 'text', (c) => c.notNull())
      .addColumn('claimed_by', 'text')
      .addColumn('delivered_at', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('webhook_deliveries_endpoint').on('webhook_deliveries').columns(['endpoint_id', 'created_at']).execute();
    await db.schema.createIndex('webhook_deliveries_due').on('webhook_deliveries').columns(['status', 'next_attempt_at']).execute();
  },
};

migrations['0015_checkpoints'] = {
  async up(db: Kysely<unknown>): Promise<void> {
    // Checkpoints of sandboxes (docs/checkpoints.md). They outlive their sandbox, so there is no
    // foreign key to it; `runtime_ref` is the driver's handle of the stored data (null until DURABLE).
    await db.schema
      .createTable('checkpoints')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('sandbox_id', 'text', (c) => c.notNull())
      .addColumn('parent_id', 'text')
      .addColumn('depth', 'integer', (c) => c.notNull())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('team_id', 'text')
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('docker_image', 'text', (c) => c.notNull())
      .addColumn('disk_size_gb', sql`double precision`, (c) => c.notNull())
      .addColumn('registry_credentials_id', 'text')
      .addColumn('runtime_driver', 'text', (c) => c.notNull())
      .addColumn('runtime_owner', 'text', (c) => c.notNull())
      .addColumn('replica_id', 'text', (c) => c.notNull())
      .addColumn('runtime_ref', 'text')
      .addColumn('size_bytes', sql`double precision`, (c) => c.notNull().defaultTo(0))
      .addColumn('memory', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('error', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text')
      .execute();
    await db.schema.createIndex('checkpoints_sandbox').on('checkpoints').columns(['sandbox_id', 'created_at']).execute();
    await db.schema.createIndex('checkpoints_user').on('checkpoints').columns(['user_id', 'created_at']).execute();
    await db.schema.createIndex('checkpoints_team').on('checkpoints').columns(['team_id', 'created_at']).execute();
    await db.schema.createIndex('checkpoints_state').on('checkpoints').columns(['state']).execute();
    // A sandbox restored (or forked) from a checkpoint names it.
    await db.schema.alterTable('sandboxes').addColumn('checkpoint_id', 'text').execute();
  },
};

migrations['0016_image_build_visibility'] = {
  // The visibility a build's image gets when it completes (Prime's `visibility` of POST /images/build).
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('image_builds').addColumn('visibility', 'text', (c) => c.notNull().defaultTo('PRIVATE')).execute();
  },
};

/** Hands Kysely's migrator the migrations above. */
export const migrationProvider: MigrationProvider = {
  getMigrations: () => Promise.resolve(migrations),
};


/** Row shapes of the store's tables. Booleans are 0/1 integers and JSON is text, so one schema serves SQLite and PostgreSQL. */
export interface SandboxesTable {
  id: string;
  name: string;
  docker_image: string;
  start_command: string | null;
  cpu_cores: number;
  memory_gb: number;
  disk_size_gb: number;
  gpu_count: number;
  gpu_type: string | null;
  vm: number;
  network_access: number;
  /** JSON array, or null for no list (migration 0006). */
  network_allowlist: string | null;
  network_denylist: string | null;
  egress_generation: number;
  egress_applied_generation: number;
  status: string;
  timeout_minutes: number;
  idle_timeout_minutes: number | null;
  termination_reason: string | null;
  environment_vars: string | null;
  secrets: string | null;
  advanced_configs: string | null;
  labels: string;
  user_id: string;
  team_id: string | null;
  region: string | null;
  registry_credentials_id: string | null;
  guaranteed: number;
  idempotency_key: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  terminated_at: string | null;
  last_activity_at: string | null;
  exit_code: number | null;
  error_type: string | null;
  error_message: string | null;
  runtime_driver: string | null;
  runtime_id: string | null;
  runtime_owner: string | null;
  /** Added by migration 0007; ISO time or null. */
  admission_deadline: string | null;
  /** Added by migration 0009: the Pod's name on the kubernetes driver, else null. */
  kubernetes_job_id: string | null;
  /** Added by migration 0010: ISO time the sandbox was paused, while PAUSED; else null. */
  paused_at: string | null;
  /** Added by migration 0010: milliseconds spent paused before the last resume. */
  paused_ms: number;
  /** The replica holding the provisioning work (migration 0008). */
  provisioner: string | null;
  /** Added by migration 0015: the checkpoint the sandbox was restored from, else null. */
  checkpoint_id: string | null;
}

/** One row per (sandbox, label), for ALL-match label filters. */
export interface SandboxLabelsTable {
  sandbox_id: string;
  label: string;
}

export interface UsersTable {
  id: string;
  name: string;
  email: string | null;
  is_admin: number;
  created_at: string;
}

export interface TeamsTable {
  id: string;
  name: string;
  created_at: string;
}

export interface TeamMembersTable {
  team_id: string;
  user_id: string;
  role: string;
  created_at: string;
}

export interface ApiKeysTable {
  id: string;
  user_id: string;
  name: string;
  /** The first characters of the key, shown in listings so a user can tell keys apart. */
  prefix: string;
  /** SHA-256 of the whole key, hex. The key itself is never stored. */
  key_hash: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

/** Credentials for pulling images from a private registry. The password never leaves the server. */
export interface RegistryCredentialsTable {
  id: string;
  user_id: string;
  team_id: string | null;
  name: string;
  server: string;
  username: string;
  password: string;
  created_at: string;
  updated_at: string;
}

/** Kysely's view of the whole database. */
/** Quota overrides (migration 0005). */
export interface QuotasTable {
  scope: string;
  subject_id: string;
  max_sandboxes: number | null;
  cpu_cores: number | null;
  memory_gb: number | null;
  disk_gb: number | null;
  updated_at: string;
}

/** Replicas' heartbeats (migration 0008); `expires_at` is ms since the epoch on the database's clock. */
export interface ReplicasTable {
  id: string;
  instance_id: string;
  started_at: string;
  expires_at: number;
  host: string;
  pid: number;
}

/** Named leases (migration 0008); `expires_at` is ms since the epoch on the database's clock. */
export interface LeasesTable {
  name: string;
  holder: string;
  expires_at: number;
}

/** Dockerfile builds (migration 0010). */
export interface ImageBuildsTable {
  id: string;
  user_id: string;
  team_id: string | null;
  image_name: string;
  image_tag: string;
  dockerfile_path: string;
  full_image_path: string;
  status: string;
  context_bytes: number | string | null;
  failed_step: string | null;
  error_message: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  replica_id: string | null;
  /** Migration 0016. */
  visibility: string;
}

/** Built images (migration 0010); `full_image_path` is unique. */
export interface ImageArtifactsTable {
  id: string;
  user_id: string;
  team_id: string | null;
  image_name: string;
  image_tag: string;
  full_image_path: string;
  runtime_ref: string;
  visibility: string;
  size_bytes: number | string;
  build_id: string;
  created_at: string;
  pushed_at: string;
}

/** Sandbox events (migration 0012); `data` is JSON text. Rows go with their sandbox's purge. */
export interface SandboxEventsTable {
  id: string;
  sandbox_id: string;
  at: string;
  type: string;
  user_id: string | null;
  key_id: string | null;
  data: string;
}

/** Webhook endpoints (migration 0014); `event_types` is a JSON array, `enabled` 0/1. */
export interface WebhookEndpointsTable {
  id: string;
  user_id: string;
  team_id: string | null;
  url: string;
  event_types: string;
  secret: string;
  enabled: number;
  created_at: string;
}

/** Webhook deliveries (migration 0014); `attempt_log` is a JSON array. */
export interface WebhookDeliveriesTable {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  payload: string;
  status: string;
  attempts: number;
  attempt_log: string;
  last_status_code: number | null;
  last_error: string | null;
  next_attempt_at: string;
  claimed_by: string | null;
  delivered_at: string | null;
  created_at: string;
}

/** Checkpoints (migration 0015); `memory` 0/1, sizes in bytes. */
export interface CheckpointsTable {
  id: string;
  sandbox_id: string;
  parent_id: string | null;
  depth: number;
  user_id: string;
  team_id: string | null;
  state: string;
  docker_image: string;
  disk_size_gb: number;
  registry_credentials_id: string | null;
  runtime_driver: string;
  runtime_owner: string;
  replica_id: string;
  runtime_ref: string | null;
  size_bytes: number;
  memory: number;
  error: string | null;
  created_at: string;
  updated_at: string;
  expires_at: string | null;
}

export interface Database {
  checkpoints: CheckpointsTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  sandbox_events: SandboxEventsTable;
  image_builds: ImageBuildsTable;
  image_artifacts: ImageArtifactsTable;
  replicas: ReplicasTable;
  leases: LeasesTable;
  quotas: QuotasTable;
  sandboxes: SandboxesTable;
  sandbox_labels: SandboxLabelsTable;
  users: UsersTable;
  teams: TeamsTable;
  team_members: TeamMembersTable;
  api_keys: ApiKeysTable;
  registry_credentials: RegistryCredentialsTable;
}

import Type, { type Static } from 'typebox';
import { SANDBOX_STATUSES } from '../../records/sandbox-records.js';
import { Nullable, StringEnum } from './common.js';

/** GPU types the Prime API names. */
export const GPU_TYPES = [
  'CPU_NODE', 'A10_24GB', 'A100_80GB', 'A100_40GB', 'A30_24GB', 'A40_48GB', 'B200_180GB', 'B300_262GB', 'GB200', 'GB300',
  'RTX3070_8GB', 'RTX3080_10GB', 'RTX3080Ti_12GB', 'RTX3090_24GB', 'RTX3090Ti_24GB', 'RTX4070Ti_12GB', 'RTX4080_16GB',
  'RTX4080Ti_16GB', 'RTX4090_24GB', 'RTX5090_32GB', 'H100_80GB', 'H200_96GB', 'GH200_96GB', 'H200_141GB', 'GH200_480GB',
  'GH200_624GB', 'L4_24GB', 'L40_48GB', 'L40S_48GB', 'RTX4000_8GB', 'RTX5000_16GB', 'RTX6000_24GB', 'RTX8000_48GB',
  'RTX2000Ada_16GB', 'RTX4000Ada_20GB', 'RTX5000Ada_32GB', 'RTX6000Ada_48GB', 'A2000_6GB', 'A4000_16GB', 'A4500_20GB',
  'A5000_24GB', 'A6000_48GB', 'V100_16GB', 'V100_32GB', 'P100_16GB', 'T4_16GB', 'P4_8GB', 'P40_24GB', 'RTX_PRO_6000B_96GB',
  'RTX_PRO_6000', 'H200',
] as const;

const EnvMap = Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', maxLength: 256 }), Type.String({ maxLength: 65_536 }), {
  maxProperties: 512,
  propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$', maxLength: 256 },
});

const Label = Type.String({ minLength: 1, maxLength: 128 });

const StartCommandObject = Type.Object({
  executable: Type.String({ minLength: 1, maxLength: 4096 }),
  args: Type.Optional(Type.Array(Type.String({ maxLength: 65_536 }), { maxItems: 1024 })),
});

/** `CreateSandboxRequest`: every field of the Prime API (server OpenAPI ∪ SDK 0.2.39). Unknown fields are ignored. */
export const CreateSandboxBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100 }),
  docker_image: Type.Optional(Type.String({ minLength: 1, maxLength: 512, description: 'Required unless checkpoint_id is given' })),
  checkpoint_id: Type.Optional(
    Nullable(Type.String({ minLength: 1, maxLength: 64, description: 'Restore: start from this DURABLE checkpoint (its image and disk size; omit docker_image and disk_size_gb)' })),
  ),
  start_command: Type.Optional(Nullable(Type.Union([Type.String({ maxLength: 131_072 }), StartCommandObject]))),
  cpu_cores: Type.Optional(Type.Number({ minimum: 0.1, maximum: 16, default: 1 })),
  memory_gb: Type.Optional(Type.Number({ minimum: 0.1, maximum: 64, default: 2 })),
  disk_size_gb: Type.Optional(Type.Number({ minimum: 0.1, maximum: 1000, description: 'Default 10; a restore takes the checkpoint\'s' })),
  gpu_count: Type.Optional(Type.Integer({ minimum: 0, maximum: 8, default: 0 })),
  gpu_type: Type.Optional(Nullable(StringEnum(GPU_TYPES))),
  vm: Type.Optional(Nullable(Type.Boolean())),
  network_access: Type.Optional(Type.Boolean({ default: true, description: 'Legacy: false is network_allowlist: []' })),
  network_allowlist: Type.Optional(
    Nullable(Type.Array(Type.String({ maxLength: 512 }), { description: 'Only these domains (*. leftmost wildcards), IPs and CIDRs are reachable; [] is no egress' })),
  ),
  network_denylist: Type.Optional(
    Nullable(Type.Array(Type.String({ maxLength: 512 }), { description: 'Everything but these domains, IPs and CIDRs is reachable' })),
  ),
  timeout_minutes: Type.Optional(Type.Integer({ minimum: -1, maximum: 1440, default: 60, description: '1..1440, or -1 for no limit' })),
  idle_timeout_minutes: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 1440 }))),
  environment_vars: Type.Optional(Nullable(EnvMap)),
  secrets: Type.Optional(Nullable(EnvMap)),
  labels: Type.Optional(Type.Array(Label, { maxItems: 64 })),
  team_id: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))),
  region: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 64 }))),
  advanced_configs: Type.Optional(Nullable(Type.Object({}, { additionalProperties: true, maxProperties: 64 }))),
  registry_credentials_id: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))),
  guaranteed: Type.Optional(Type.Boolean({ default: false })),
  idempotency_key: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))),
  admission_timeout_seconds: Type.Optional(
    Nullable(
      Type.Integer({
        minimum: 1,
        maximum: 86_400,
        description: 'Corral extension: a create still waiting for capacity after this many seconds ends in ERROR (ADMISSION_TIMEOUT)',
      }),
    ),
  ),
});
export type CreateSandboxBody = Static<typeof CreateSandboxBody>;

/** `UpdateSandboxRequest`: what may change on a live sandbox. */
export const UpdateSandboxBody = Type.Object({
  timeout_minutes: Type.Optional(Type.Integer({ minimum: -1, maximum: 1440 })),
  idle_timeout_minutes: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 1440 }))),
  labels: Type.Optional(Type.Array(Label, { maxItems: 64 })),
});
export type UpdateSandboxBody = Static<typeof UpdateSandboxBody>;

/** Query of `GET /sandbox`. */
export const ListSandboxesQuery = Type.Object({
  team_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  user_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  status: Type.Optional(StringEnum(SANDBOX_STATUSES)),
  is_active: Type.Optional(Type.Boolean()),
  labels: Type.Optional(Type.Array(Label, { maxItems: 50 })),
  page: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1 })),
  per_page: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
});
export type ListSandboxesQuery = Static<typeof ListSandboxesQuery>;

/** `BulkDeleteSandboxRequest`. */
export const BulkDeleteBody = Type.Object({
  sandbox_ids: Type.Optional(Nullable(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 500 }))),
  labels: Type.Optional(Nullable(Type.Array(Label, { minItems: 1, maxItems: 50 }))),
  team_id: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))),
  user_id: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))),
  all_users: Type.Optional(Type.Boolean({ default: false })),
});
export type BulkDeleteBody = Static<typeof BulkDeleteBody>;

/** Body of `POST /sandbox/status:batchGet`. */
export const BatchStatusBody = Type.Object({
  sandbox_ids: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 100 }),
});
export type BatchStatusBody = Static<typeof BatchStatusBody>;

const NullableString = Nullable(Type.String());

/** `SandboxResponse`, camelCase as Prime sends it. Secrets come back masked. */
export const SandboxResponse = Type.Object({
  id: Type.String(),
  name: Type.String(),
  dockerImage: Type.String(),
  startCommand: NullableString,
  cpuCores: Type.Number(),
  memoryGB: Type.Number(),
  diskSizeGB: Type.Number(),
  diskMountPath: Type.String(),
  gpuCount: Type.Integer(),
  gpuType: NullableString,
  vm: Type.Boolean(),
  networkAccess: Type.Boolean(),
  networkAllowlist: Nullable(Type.Array(Type.String())),
  networkDenylist: Nullable(Type.Array(Type.String())),
  status: StringEnum(SANDBOX_STATUSES),
  timeoutMinutes: Type.Integer(),
  idleTimeoutMinutes: Nullable(Type.Integer()),
  terminationReason: NullableString,
  environmentVars: Nullable(Type.Record(Type.String(), Type.String())),
  secrets: Nullable(Type.Record(Type.String(), Type.String())),
  advancedConfigs: Nullable(Type.Object({}, { additionalProperties: true })),
  labels: Type.Array(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  startedAt: NullableString,
  terminatedAt: NullableString,
  exitCode: Nullable(Type.Integer()),
  errorType: NullableString,
  errorMessage: NullableString,
  userId: NullableString,
  teamId: NullableString,
  kubernetesJobId: NullableString,
  region: NullableString,
  registryCredentialsId: NullableString,
  pendingImageBuildId: NullableString,
  guaranteed: Type.Boolean(),
  checkpointId: Type.Optional(Nullable(Type.String({ description: 'Corral extension: the checkpoint the sandbox was restored from' }))),
});
export type SandboxResponse = Static<typeof SandboxResponse>;

/** `SandboxListResponse`. */
export const SandboxListResponse = Type.Object({
  sandboxes: Type.Array(SandboxResponse),
  total: Type.Integer(),
  page: Type.Integer(),
  per_page: Type.Integer(),
  has_next: Type.Boolean(),
});

/** `BulkDeleteSandboxResponse`. */
export const BulkDeleteResponse = Type.Object({
  succeeded: Type.Array(Type.String()),
  failed: Type.Array(Type.Object({ sandbox_id: Type.String(), error: Type.String() })),
  message: Type.String(),
});

/** Response of `POST /sandbox/status:batchGet`. */
export const BatchStatusResponse = Type.Object({
  statuses: Type.Array(
    Type.Object({
      sandbox_id: Type.String(),
      status: StringEnum(SANDBOX_STATUSES),
      error_type: NullableString,
      error_message: NullableString,
      pending_image_build_id: NullableString,
    }),
  ),
  errors: Type.Array(
    Type.Object({ sandbox_id: Type.String(), code: StringEnum(['NOT_FOUND', 'FORBIDDEN', 'MANAGED'] as const), message: Type.String() }),
  ),
});

/** `SandboxLogsResponse`. */
export const LogsResponse = Type.Object({ logs: Type.String() });

/** `SandboxErrorContextResponse`. */
export const ErrorContextResponse = Type.Object({
  status: NullableString,
  errorType: NullableString,
  errorMessage: NullableString,
});

/** `SandboxAuthResponse`. */
export const AuthResponse = Type.Object({
  token: Type.String(),
  gateway_url: Type.String(),
  user_ns: Type.String(),
  job_id: Type.String(),
  expires_at: Type.String(),
});

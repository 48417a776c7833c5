import Type, { type Static } from 'typebox';
import { CHECKPOINT_STATES } from '../../records/checkpoint-records.js';
import { Nullable, StringEnum } from './common.js';
import { CreateSandboxBody, SandboxResponse } from './sandbox-schemas.js';

const NullableString = Nullable(Type.String());

/**
 * Prime's `SandboxCheckpoint` (snake_case, as Prime's SDK reads it), with Corral's extensions:
 * `user_id`, `memory`, `expires_at`.
 */
export const CheckpointResponse = Type.Object({
  id: Type.String(),
  sandbox_id: Type.String(),
  parent_id: NullableString,
  team_id: NullableString,
  user_id: Type.String(),
  state: StringEnum(CHECKPOINT_STATES),
  depth: Type.Integer(),
  docker_image: Type.String(),
  disk_size_bytes: Type.Integer({ description: "The sandbox's disk size; a restore gets the same" }),
  stored_bytes: Type.Integer({ description: 'Bytes stored for this checkpoint alone (over its parent and the image); 0 until DURABLE' }),
  memory: Type.Boolean({ description: 'Corral extension: running processes and their memory were captured too' }),
  error: NullableString,
  created_at: Type.String(),
  updated_at: Type.String(),
  expires_at: Nullable(Type.String({ description: 'Corral extension: when retention deletes it (CORRAL_CHECKPOINT_RETENTION_HOURS)' })),
});
export type CheckpointResponse = Static<typeof CheckpointResponse>;

/** Body of `POST /sandbox/{id}/checkpoints`: Prime sends none. */
export const CreateCheckpointBody = Nullable(
  Type.Object({
    memory: Type.Optional(Type.Boolean({ description: 'Corral extension: also capture running processes and their memory (drivers with memory checkpoints)' })),
  }),
);
export type CreateCheckpointBody = Static<typeof CreateCheckpointBody>;

export const CheckpointIdParams = Type.Object({ checkpoint_id: Type.String({ minLength: 1, maxLength: 128 }) });

/** Query of `GET /sandbox/{id}/checkpoints`. */
export const SandboxCheckpointsQuery = Type.Object({ checkpoint_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })) });
export type SandboxCheckpointsQuery = Static<typeof SandboxCheckpointsQuery>;

/** `{checkpoints: [...]}`, as Prime's `list_checkpoints` reads it. */
export const CheckpointListResponse = Type.Object({ checkpoints: Type.Array(CheckpointResponse) });

/** Query of `GET /sandbox/checkpoints` (Corral extension). */
export const ListCheckpointsQuery = Type.Object({
  state: Type.Optional(StringEnum(CHECKPOINT_STATES)),
  page: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1 })),
  per_page: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
});
export type ListCheckpointsQuery = Static<typeof ListCheckpointsQuery>;

/** A page of `GET /sandbox/checkpoints`. */
export const CheckpointPageResponse = Type.Object({
  checkpoints: Type.Array(CheckpointResponse),
  total: Type.Integer(),
  page: Type.Integer(),
  per_page: Type.Integer(),
  has_next: Type.Boolean(),
});

const MAX_FORKS = 64;

const { checkpoint_id: _restore, name: _name, ...createFields } = CreateSandboxBody.properties;

/** Body of `POST /sandbox/checkpoints/{id}/fork`: `count` sandboxes, each a create of the checkpoint with these fields. */
export const ForkCheckpointBody = Type.Object({
  ...createFields,
  count: Type.Integer({ minimum: 1, maximum: MAX_FORKS }),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Default: fork' })),
});
export type ForkCheckpointBody = Static<typeof ForkCheckpointBody>;

/** Body of `POST /sandbox/{id}/fork`. */
export const ForkSandboxBody = Type.Object({
  count: Type.Integer({ minimum: 1, maximum: MAX_FORKS }),
  memory: Type.Optional(Type.Boolean({ description: 'Capture running processes and their memory too (drivers with memory checkpoints)' })),
});
export type ForkSandboxBody = Static<typeof ForkSandboxBody>;

export const ForkResponse = Type.Object({ sandboxes: Type.Array(SandboxResponse) });
export const ForkSandboxResponse = Type.Object({ checkpoint: CheckpointResponse, sandboxes: Type.Array(SandboxResponse) });

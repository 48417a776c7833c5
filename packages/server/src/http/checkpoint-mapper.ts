import type { CheckpointRecord } from '../records/checkpoint-records.js';
import type { CheckpointResponse } from './schemas/checkpoint-schemas.js';

const GIB = 1024 ** 3;

/** A stored checkpoint as the API returns it (Prime's snake_case `SandboxCheckpoint`). */
export function toCheckpointResponse(c: CheckpointRecord): CheckpointResponse {
  return {
    id: c.id,
    sandbox_id: c.sandboxId,
    parent_id: c.parentId,
    team_id: c.teamId,
    user_id: c.userId,
    state: c.state,
    depth: c.depth,
    docker_image: c.dockerImage,
    disk_size_bytes: Math.round(c.diskSizeGb * GIB),
    stored_bytes: Math.round(c.sizeBytes),
    memory: c.memory,
    error: c.error,
    created_at: c.createdAt,
    updated_at: c.updatedAt,
    expires_at: c.expiresAt,
  };
}

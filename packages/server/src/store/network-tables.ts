import type { Database } from './schema.js';

/** Port exposures (migration 0003). */
export interface ExposuresTable {
  id: string;
  sandbox_id: string;
  user_id: string;
  port: number;
  name: string | null;
  protocol: string;
  external_port: number | null;
  access_token: string | null;
  created_at: string;
}

/** SSH sessions (migration 0003). */
export interface SshSessionsTable {
  id: string;
  sandbox_id: string;
  user_id: string;
  exposure_id: string;
  ttl_seconds: number;
  created_at: string;
  expires_at: string;
  /** Migration 0005. */
  api_key_id: string | null;
}

/** Keys admitted per SSH session (migration 0003). */
export interface SshSessionKeysTable {
  session_id: string;
  public_key: string;
  expires_at: string;
}

/** Reverse tunnels (migration 0003). */
export interface TunnelsTable {
  id: string;
  user_id: string;
  team_id: string | null;
  name: string | null;
  local_port: number;
  labels: string;
  http_user: string | null;
  http_password_hash: string | null;
  binding_secret_hash: string;
  status: string;
  created_at: string;
  connected_at: string | null;
  expires_at: string;
  terminated_at: string | null;
  /** Migration 0005. */
  api_key_id: string | null;
}

/** The store's database with the networking tables. */
export interface NetworkDatabase extends Database {
  exposures: ExposuresTable;
  ssh_sessions: SshSessionsTable;
  ssh_session_keys: SshSessionKeysTable;
  tunnels: TunnelsTable;
}

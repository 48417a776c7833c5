import type { ExposureRecord, SshKeyRecord, SshSessionRecord, TunnelFilter, TunnelPatch, TunnelRecord } from '../records/network-records.js';

/**
 * The stored SSH sessions and their admitted keys, as the SSH server reads and writes them. The
 * store implements it; the SSH server never sees more of the store than this.
 */
export interface SshSessionRecords {
  insertSshSession(session: SshSessionRecord): Promise<void>;
  getSshSession(id: string): Promise<SshSessionRecord | undefined>;
  /** Deletes the session and its keys. */
  deleteSshSession(id: string): Promise<boolean>;
  /** Admits a key for a session, or moves the expiry of a key admitted before. */
  upsertSshKey(key: SshKeyRecord): Promise<void>;
  /** The session's keys that expire after `now`. */
  listSshKeys(sessionId: string, now: string): Promise<SshKeyRecord[]>;
}

/** The stored reverse tunnels, as the tunnel hub reads and writes them (the store implements it). */
export interface TunnelRecords {
  insertTunnel(tunnel: TunnelRecord): Promise<void>;
  getTunnel(id: string): Promise<TunnelRecord | undefined>;
  /** One page, newest first, and the number of matches. */
  listTunnels(filter: TunnelFilter, page: number, perPage: number): Promise<{ tunnels: TunnelRecord[]; total: number }>;
  updateTunnel(id: string, patch: TunnelPatch): Promise<TunnelRecord | undefined>;
  deleteTunnel(id: string): Promise<boolean>;
  /** Marks tunnels past `expiresAt` as expired; returns their ids. */
  expireTunnels(now: string): Promise<string[]>;
}

/**
 * Everything the networking layer keeps in the store: exposures, SSH sessions, tunnels, and the
 * sweeps over them. The store implements it; `wiring.ts` hands the store over as this.
 */
export interface NetworkRecords extends SshSessionRecords, TunnelRecords {
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
}

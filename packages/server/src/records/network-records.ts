/** Protocol of a port exposure: `HTTP` is routed by hostname through the proxy, `TCP` gets its own external port. */
export type ExposureProtocol = 'HTTP' | 'TCP';

/** A sandbox port made reachable from outside. */
export interface ExposureRecord {
  id: string;
  sandboxId: string;
  /** The sandbox owner's user id. */
  userId: string;
  /** Port inside the sandbox. */
  port: number;
  name: string | null;
  protocol: ExposureProtocol;
  /** The listener port on the Corral host, for `TCP` exposures. */
  externalPort: number | null;
  /** Null: anyone with the URL may connect. Otherwise requests must carry this token (private exposure). */
  accessToken: string | null;
  createdAt: string;
}

/** An SSH session: keys authorised for it may log into its sandbox through Corral's SSH server. */
export interface SshSessionRecord {
  id: string;
  sandboxId: string;
  userId: string;
  /** Reported as `exposure_id`; the SSH server's port is shared, so no per-session exposure row exists. */
  exposureId: string;
  ttlSeconds: number;
  createdAt: string;
  expiresAt: string;
  /** The API key the session was opened with (null on sessions stored before keys were recorded); revoking it ends the session. */
  apiKeyId: string | null;
}

/** A public key admitted for one SSH session until `expiresAt`. */
export interface SshKeyRecord {
  sessionId: string;
  /** OpenSSH one-line form: `ssh-ed25519 AAAA… comment`. */
  publicKey: string;
  expiresAt: string;
}

/** A tunnel's stored status; `expired` is also reported for any tunnel past `expiresAt`. */
export type TunnelStatus = 'pending' | 'connected' | 'disconnected' | 'expired';

/** A reverse tunnel from a user's machine, served at `http://<id>.<proxy domain>`. */
export interface TunnelRecord {
  id: string;
  userId: string;
  teamId: string | null;
  name: string | null;
  localPort: number;
  labels: string[];
  /** With a user, requests need HTTP basic auth with this user and the password returned once at creation. */
  httpUser: string | null;
  /** SHA-256 hex of the basic-auth password. */
  httpPasswordHash: string | null;
  /** SHA-256 hex of the binding secret the tunnel client presents. */
  bindingSecretHash: string;
  status: TunnelStatus;
  createdAt: string;
  connectedAt: string | null;
  expiresAt: string;
  terminatedAt: string | null;
  /** The API key the tunnel was created with (null on tunnels stored before keys were recorded); revoking it deletes the tunnel. */
  apiKeyId: string | null;
}

/** Which tunnels a listing covers. */
export interface TunnelFilter {
  userId?: string;
  teamId?: string;
  status?: TunnelStatus;
  /** Tunnels carrying every one of these labels. */
  labels?: string[];
}

/** Fields of a tunnel that change after creation. */
export type TunnelPatch = Partial<Pick<TunnelRecord, 'status' | 'connectedAt' | 'terminatedAt'>>;

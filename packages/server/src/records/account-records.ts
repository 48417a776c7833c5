/** Credentials for a private image registry. */
export interface RegistryCredentialRecord {
  id: string;
  userId: string;
  /** Team members may use a team's credentials. */
  teamId: string | null;
  name: string;
  /** Registry host (`ghcr.io`, `127.0.0.1:5001`). */
  server: string;
  username: string;
  password: string;
  createdAt: string;
  updatedAt: string;
}

/** A user account. */
export interface UserRecord {
  id: string;
  name: string;
  email: string | null;
  /** Server administrators manage users, teams and everyone's keys. */
  isAdmin: boolean;
  createdAt: string;
}

/** A team; sandboxes may belong to one. */
export interface TeamRecord {
  id: string;
  name: string;
  createdAt: string;
}

/** A team member's role: admins see and manage every member's sandboxes in the team. */
export type TeamRole = 'member' | 'admin';

/** Membership of one user in one team. */
export interface TeamMemberRecord {
  teamId: string;
  userId: string;
  role: TeamRole;
  createdAt: string;
}

/** An API key without its secret. */
export interface ApiKeyRecord {
  id: string;
  userId: string;
  name: string;
  prefix: string;
  keyHash: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

import type {
  CreateKeyRequest,
  CreateKeyResponse,
  CreateTeamResponse,
  CreateUserRequest,
  CreateUserResponse,
  DeleteTeamResponse,
  DeleteUserResponse,
  GetMeResponse,
  GetUserQuotaResponse,
  ListKeysResponse,
  ListTeamMembersResponse,
  ListTeamsResponse,
  ListUsersResponse,
  RemoveTeamMemberResponse,
  RevokeKeyResponse,
  SetTeamMemberRequest,
  SetTeamMemberResponse,
  SetUserQuotaRequest,
} from '../generated/api.js';
import type { HttpTransport } from '../http.js';

const seg = encodeURIComponent;

/**
 * A user's or team's quota over their active sandboxes, as `GET /users/{id}/quota` and
 * `/teams/{id}/quota` answer: `limits` in force (null: no limit), the stored `overrides` (null: the
 * server default applies, -1: no limit) and current `usage`.
 */
export type Quota = GetUserQuotaResponse;

/**
 * The overrides a `setQuota` stores. It replaces the stored overrides: a field left out or null goes
 * back to the server default (`CORRAL_QUOTA_*`, `CORRAL_TEAM_QUOTA_*`); {@link QUOTA_UNLIMITED} (-1) means no limit.
 */
export type QuotaOverrides = SetUserQuotaRequest;

/** The override value that lifts a quota limit. */
export const QUOTA_UNLIMITED = -1;

/**
 * API keys: yours, or any user's for an admin.
 *
 * @example
 * ```ts
 * const { key, id } = await client.keys.create({ name: 'ci' }); // `key` is shown only once
 * await client.keys.revoke(id);
 * ```
 */
export class KeysApi {
  constructor(private readonly http: HttpTransport) {}
  /** `GET /keys`. */
  list(userId?: string): Promise<ListKeysResponse> {
    return this.http.call('GET', '/keys', { query: { user_id: userId }, operation: 'ListKeys' });
  }
  /** `POST /keys`: the secret is in the answer only. */
  create(body: CreateKeyRequest = {}): Promise<CreateKeyResponse> {
    return this.http.call('POST', '/keys', { body: body ?? {}, operation: 'CreateKey' });
  }
  /** `DELETE /keys/{id}`. */
  revoke(keyId: string): Promise<RevokeKeyResponse> {
    return this.http.call('DELETE', `/keys/${seg(keyId)}`, { operation: 'RevokeKey' });
  }
}

/**
 * Users (admin only, except through `client.me()` and reading your own quota).
 *
 * @example
 * ```ts
 * const carol = await client.users.create({ name: 'carol' });
 * await client.users.setQuota(carol.id, { sandboxes: 5, memory_gb: 16 }); // other limits: server defaults
 * const { limits, usage } = await client.users.quota(carol.id);
 * ```
 */
export class UsersApi {
  constructor(private readonly http: HttpTransport) {}
  /** `GET /users`. */
  list(): Promise<ListUsersResponse> {
    return this.http.call('GET', '/users', { operation: 'ListUsers' });
  }
  /** `POST /users`. */
  create(body: CreateUserRequest): Promise<CreateUserResponse> {
    return this.http.call('POST', '/users', { body, operation: 'CreateUser' });
  }
  /** `DELETE /users/{id}`: the user and their keys. */
  delete(userId: string): Promise<DeleteUserResponse> {
    return this.http.call('DELETE', `/users/${seg(userId)}`, { operation: 'DeleteUser' });
  }
  /** `GET /users/{id}/quota`: limits, overrides and usage; a user may read their own, an admin anyone's. */
  quota(userId: string): Promise<Quota> {
    return this.http.call('GET', `/users/${seg(userId)}/quota`, { operation: 'GetUserQuota' });
  }
  /**
   * `PUT /users/{id}/quota` (admin): replaces the user's overrides; fields left out or null use the
   * server default, {@link QUOTA_UNLIMITED} lifts the limit. Answers the quota now in force.
   */
  setQuota(userId: string, overrides: QuotaOverrides): Promise<Quota> {
    return this.http.call('PUT', `/users/${seg(userId)}/quota`, { body: overrides, operation: 'SetUserQuota' });
  }
  /** `DELETE /users/{id}/quota` (admin): drops the overrides, so the server defaults apply again. */
  resetQuota(userId: string): Promise<Quota> {
    return this.http.call('DELETE', `/users/${seg(userId)}/quota`, { operation: 'ResetUserQuota' });
  }
}

/**
 * Teams, their members and their quotas (over every member's active sandboxes in the team).
 *
 * @example
 * ```ts
 * const team = await client.teams.create('ml');
 * await client.teams.setMember(team.id, userId, 'member');
 * await client.teams.setQuota(team.id, { sandboxes: 20, cpu_cores: QUOTA_UNLIMITED });
 * ```
 */
export class TeamsApi {
  constructor(private readonly http: HttpTransport) {}
  /** `GET /teams`: all for an admin, else your own. */
  list(): Promise<ListTeamsResponse> {
    return this.http.call('GET', '/teams', { operation: 'ListTeams' });
  }
  /** `POST /teams`. */
  create(name: string): Promise<CreateTeamResponse> {
    return this.http.call('POST', '/teams', { body: { name }, operation: 'CreateTeam' });
  }
  /** `DELETE /teams/{id}`. */
  delete(teamId: string): Promise<DeleteTeamResponse> {
    return this.http.call('DELETE', `/teams/${seg(teamId)}`, { operation: 'DeleteTeam' });
  }
  /** `GET /teams/{id}/members`. */
  members(teamId: string): Promise<ListTeamMembersResponse> {
    return this.http.call('GET', `/teams/${seg(teamId)}/members`, { operation: 'ListTeamMembers' });
  }
  /** `PUT /teams/{id}/members/{userId}`: adds a member or changes their role. */
  setMember(teamId: string, userId: string, role: SetTeamMemberRequest['role']): Promise<SetTeamMemberResponse> {
    return this.http.call('PUT', `/teams/${seg(teamId)}/members/${seg(userId)}`, { body: { role }, operation: 'SetTeamMember' });
  }
  /** `DELETE /teams/{id}/members/{userId}`. */
  removeMember(teamId: string, userId: string): Promise<RemoveTeamMemberResponse> {
    return this.http.call('DELETE', `/teams/${seg(teamId)}/members/${seg(userId)}`, { operation: 'RemoveTeamMember' });
  }
  /** `GET /teams/{id}/quota`: limits, overrides and usage; members and admins may read it. */
  quota(teamId: string): Promise<Quota> {
    return this.http.call('GET', `/teams/${seg(teamId)}/quota`, { operation: 'GetTeamQuota' });
  }
  /**
   * `PUT /teams/{id}/quota` (admin): replaces the team's overrides; fields left out or null use the
   * server default, {@link QUOTA_UNLIMITED} lifts the limit. Answers the quota now in force.
   */
  setQuota(teamId: string, overrides: QuotaOverrides): Promise<Quota> {
    return this.http.call('PUT', `/teams/${seg(teamId)}/quota`, { body: overrides, operation: 'SetTeamQuota' });
  }
  /** `DELETE /teams/{id}/quota` (admin): drops the overrides, so the server defaults apply again. */
  resetQuota(teamId: string): Promise<Quota> {
    return this.http.call('DELETE', `/teams/${seg(teamId)}/quota`, { operation: 'ResetTeamQuota' });
  }
}

/** `GET /me`: the caller and their teams. */
export function getMe(http: HttpTransport): Promise<GetMeResponse> {
  return http.call('GET', '/me', { operation: 'GetMe' });
}

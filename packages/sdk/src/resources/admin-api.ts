import type {
  CreateKeyRequest,
  CreateKeyResponse,
  CreateTeamResponse,
  CreateUserRequest,
  CreateUserResponse,
  DeleteTeamResponse,
  DeleteUserResponse,
  GetMeResponse,
  ListKeysResponse,
  ListTeamMembersResponse,
  ListTeamsResponse,
  ListUsersResponse,
  RemoveTeamMemberResponse,
  RevokeKeyResponse,
  SetTeamMemberRequest,
  SetTeamMemberResponse,
} from '../generated/api.js';
import type { HttpTransport } from '../http.js';

const seg = encodeURIComponent;

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
 * Users (admin only, except through `client.me()`).
 *
 * @example
 * ```ts
 * const carol = await client.users.create({ name: 'carol' });
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
}

/**
 * Teams and their members.
 *
 * @example
 * ```ts
 * const team = await client.teams.create('ml');
 * await client.teams.setMember(team.id, userId, 'member');
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
}

/** `GET /me`: the caller and their teams. */
export function getMe(http: HttpTransport): Promise<GetMeResponse> {
  return http.call('GET', '/me', { operation: 'GetMe' });
}

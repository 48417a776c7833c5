import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import type { TeamRecord, UserRecord } from '../../records/account-records.js';
import { type AppServices, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, ErrorBody, Nullable, StringEnum, SuccessResponse } from '../schemas/common.js';

const tags = ['Administration'];
const Id = Type.String({ minLength: 1, maxLength: 128 });

const User = Type.Object({ id: Type.String(), name: Type.String(), email: Nullable(Type.String()), is_admin: Type.Boolean(), created_at: Type.String() });
const Team = Type.Object({ id: Type.String(), name: Type.String(), created_at: Type.String(), role: Type.Optional(Nullable(Type.String())) });
const Member = Type.Object({ team_id: Type.String(), user_id: Type.String(), role: Type.String(), created_at: Type.String() });
const ApiKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String(),
  user_id: Type.String(),
  created_at: Type.String(),
  last_used_at: Nullable(Type.String()),
  revoked_at: Nullable(Type.String()),
});
const CreatedKey = Type.Object({ ...ApiKey.properties, key: Type.String({ description: 'The secret; shown only in this response' }) });

const CreateUserBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$' }),
  email: Type.Optional(Nullable(Type.String({ maxLength: 256 }))),
  is_admin: Type.Optional(Type.Boolean()),
});
const CreateTeamBody = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }) });
const SetMemberBody = Type.Object({ role: StringEnum(['member', 'admin'] as const) });
const CreateKeyBody = Type.Object({ name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })), user_id: Type.Optional(Id) });

const Errors = { ...ERROR_RESPONSES, 403: ErrorBody, 409: ErrorBody };

function userView(u: UserRecord): Static<typeof User> {
  return { id: u.id, name: u.name, email: u.email, is_admin: u.isAdmin, created_at: u.createdAt };
}

function teamView(t: TeamRecord & { role?: string | null }): Static<typeof Team> {
  return { id: t.id, name: t.name, created_at: t.createdAt, role: t.role ?? null };
}

/** Corral's own administration API: the caller, users, teams and API keys. */
export function registerAdminRoutes(app: FastifyInstance, { auth }: AppServices): void {
  app.get('/me', { schema: { tags, summary: 'The caller', response: { 200: Type.Object({ user: User, teams: Type.Array(Team) }), ...Errors } } }, async (request) => {
    const caller = principalOf(request);
    return { user: userView(caller.user), teams: (await auth.listTeams(caller)).filter((t) => caller.teams.has(t.id)).map(teamView) };
  });

  app.get('/users', { schema: { tags, summary: 'List users (admin)', response: { 200: Type.Object({ users: Type.Array(User) }), ...Errors } } }, async (request) => ({
    users: (await auth.listUsers(principalOf(request))).map(userView),
  }));

  app.post<{ Body: Static<typeof CreateUserBody> }>(
    '/users',
    { schema: { tags, summary: 'Create a user (admin)', body: CreateUserBody, response: { 201: User, ...Errors } } },
    async (request, reply) => {
      const user = await auth.createUser(principalOf(request), {
        name: request.body.name,
        email: request.body.email ?? null,
        isAdmin: request.body.is_admin ?? false,
      });
      return reply.code(201).send(userView(user));
    },
  );

  app.delete<{ Params: { user_id: string } }>(
    '/users/:user_id',
    { schema: { tags, summary: 'Delete a user and their keys (admin)', params: Type.Object({ user_id: Id }), response: { 200: SuccessResponse, ...Errors } } },
    async (request) => {
      await auth.deleteUser(principalOf(request), request.params.user_id);
      return { success: true, message: `User ${request.params.user_id} deleted` };
    },
  );

  app.get('/teams', { schema: { tags, summary: 'List teams (all for an admin, else your own)', response: { 200: Type.Object({ teams: Type.Array(Team) }), ...Errors } } }, async (request) => ({
    teams: (await auth.listTeams(principalOf(request))).map(teamView),
  }));

  app.post<{ Body: Static<typeof CreateTeamBody> }>(
    '/teams',
    { schema: { tags, summary: 'Create a team (admin)', body: CreateTeamBody, response: { 201: Team, ...Errors } } },
    async (request, reply) => reply.code(201).send(teamView(await auth.createTeam(principalOf(request), request.body.name))),
  );

  app.delete<{ Params: { team_id: string } }>(
    '/teams/:team_id',
    { schema: { tags, summary: 'Delete a team (admin)', params: Type.Object({ team_id: Id }), response: { 200: SuccessResponse, ...Errors } } },
    async (request) => {
      await auth.deleteTeam(principalOf(request), request.params.team_id);
      return { success: true, message: `Team ${request.params.team_id} deleted` };
    },
  );

  app.get<{ Params: { team_id: string } }>(
    '/teams/:team_id/members',
    { schema: { tags, summary: 'List team members', params: Type.Object({ team_id: Id }), response: { 200: Type.Object({ members: Type.Array(Member) }), ...Errors } } },
    async (request) => ({
      members: (await auth.listMembers(principalOf(request), request.params.team_id)).map((m) => ({
        team_id: m.teamId,
        user_id: m.userId,
        role: m.role,
        created_at: m.createdAt,
      })),
    }),
  );

  app.put<{ Params: { team_id: string; user_id: string }; Body: Static<typeof SetMemberBody> }>(
    '/teams/:team_id/members/:user_id',
    {
      schema: {
        tags,
        summary: 'Add a member or change their role (admin or team admin)',
        params: Type.Object({ team_id: Id, user_id: Id }),
        body: SetMemberBody,
        response: { 200: Member, ...Errors },
      },
    },
    async (request) => {
      const m = await auth.setMember(principalOf(request), request.params.team_id, request.params.user_id, request.body.role);
      return { team_id: m.teamId, user_id: m.userId, role: m.role, created_at: m.createdAt };
    },
  );

  app.delete<{ Params: { team_id: string; user_id: string } }>(
    '/teams/:team_id/members/:user_id',
    {
      schema: { tags, summary: 'Remove a member (admin or team admin)', params: Type.Object({ team_id: Id, user_id: Id }), response: { 200: SuccessResponse, ...Errors } },
    },
    async (request) => {
      await auth.removeMember(principalOf(request), request.params.team_id, request.params.user_id);
      return { success: true, message: `User ${request.params.user_id} removed from team ${request.params.team_id}` };
    },
  );

  app.get<{ Querystring: { user_id?: string } }>(
    '/keys',
    {
      schema: {
        tags,
        summary: 'List API keys (yours; any user\'s for an admin)',
        querystring: Type.Object({ user_id: Type.Optional(Id) }),
        response: { 200: Type.Object({ keys: Type.Array(ApiKey) }), ...Errors },
      },
    },
    async (request) => ({ keys: await auth.listKeys(principalOf(request), request.query.user_id) }),
  );

  app.post<{ Body: Static<typeof CreateKeyBody> | undefined }>(
    '/keys',
    { schema: { tags, summary: 'Create an API key; the secret is returned once', body: Type.Union([CreateKeyBody, Type.Null()]), response: { 201: CreatedKey, ...Errors } } },
    async (request, reply) => {
      const body = request.body ?? {};
      const { key, record } = await auth.createKeyFor(principalOf(request), body.user_id, body.name ?? 'api key');
      return reply.code(201).send({ ...record, key });
    },
  );

  app.delete<{ Params: { key_id: string } }>(
    '/keys/:key_id',
    { schema: { tags, summary: 'Revoke an API key', params: Type.Object({ key_id: Id }), response: { 200: SuccessResponse, ...Errors } } },
    async (request) => {
      await auth.revokeKey(principalOf(request), request.params.key_id);
      return { success: true, message: `API key ${request.params.key_id} revoked` };
    },
  );
}

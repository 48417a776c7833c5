import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { type AppServices, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, Nullable, SuccessResponse } from '../schemas/common.js';

const tags = ['Template'];

const Credential = Type.Object({
  id: Type.String(),
  name: Type.String(),
  server: Type.String(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  userId: Type.String(),
  teamId: Nullable(Type.String()),
});

const CreateCredentialBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 100 }),
  server: Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.-]+(:[0-9]{1,5})?$' }),
  username: Type.String({ minLength: 1, maxLength: 256 }),
  password: Type.String({ minLength: 1, maxLength: 8192 }),
  team_id: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))),
});

/** Registry credentials: Prime's listing, plus Corral's create and delete. */
export function registerTemplateRoutes(app: FastifyInstance, { registryCredentials }: AppServices): void {
  app.get(
    '/template/registry-credentials',
    { schema: { tags, summary: 'List Registry Credentials', response: { 200: Type.Object({ credentials: Type.Array(Credential) }), ...ERROR_RESPONSES } } },
    async (request) => ({ credentials: await registryCredentials.list(principalOf(request)) }),
  );

  app.post<{ Body: Static<typeof CreateCredentialBody> }>(
    '/template/registry-credentials',
    {
      schema: {
        tags,
        summary: 'Create Registry Credentials (Corral); the password is stored and never returned',
        body: CreateCredentialBody,
        response: { 201: Credential, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const created = await registryCredentials.create(principalOf(request), {
        name: b.name,
        server: b.server,
        username: b.username,
        password: b.password,
        teamId: b.team_id ?? null,
      });
      return reply.code(201).send(created);
    },
  );

  app.delete<{ Params: { credentials_id: string } }>(
    '/template/registry-credentials/:credentials_id',
    {
      schema: {
        tags,
        summary: 'Delete Registry Credentials (Corral)',
        params: Type.Object({ credentials_id: Type.String({ minLength: 1, maxLength: 128 }) }),
        response: { 200: SuccessResponse, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      await registryCredentials.delete(principalOf(request), request.params.credentials_id);
      return { success: true, message: `Registry credentials ${request.params.credentials_id} deleted` };
    },
  );
}

import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import type { QuotaScope } from '../../records/quota-records.js';
import { type AppServices, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, ErrorBody, Nullable } from '../schemas/common.js';

const tags = ['Administration'];
const Id = Type.String({ minLength: 1, maxLength: 128 });
const Limit = Nullable(Type.Number());
const Amounts = (value: ReturnType<typeof Nullable> | ReturnType<typeof Type.Number>) =>
  Type.Object({ sandboxes: value, cpu_cores: value, memory_gb: value, disk_gb: value });

const Quota = Type.Object({
  scope: Type.String(),
  subject_id: Type.String(),
  limits: Amounts(Limit),
  overrides: Amounts(Limit),
  usage: Amounts(Type.Number()),
});

const QuotaBody = Type.Object({
  sandboxes: Type.Optional(Nullable(Type.Integer({ minimum: -1, maximum: 1_000_000 }))),
  cpu_cores: Type.Optional(Nullable(Type.Number({ minimum: -1, maximum: 1_000_000 }))),
  memory_gb: Type.Optional(Nullable(Type.Number({ minimum: -1, maximum: 1_000_000_000 }))),
  disk_gb: Type.Optional(Nullable(Type.Number({ minimum: -1, maximum: 1_000_000_000 }))),
});

const Errors = { ...ERROR_RESPONSES, 403: ErrorBody };

/**
 * Quota administration: `GET|PUT|DELETE /users/{id}/quota` and `/teams/{id}/quota`. Anyone reads
 * their own and their teams' quotas (limits, overrides, usage); only server admins change them.
 * In a PUT, a missing or null field uses the server default and -1 means no limit.
 */
export function registerQuotaRoutes(app: FastifyInstance, { quotas }: AppServices): void {
  for (const [scope, param] of [
    ['user', 'user'],
    ['team', 'team'],
  ] as const satisfies ReadonlyArray<readonly [QuotaScope, string]>) {
    // The same parameter names as the other /users/:user_id and /teams/:team_id routes.
    const name = `${param}_id`;
    const path = `/${param}s/:${name}/quota`;
    const params = Type.Object({ [name]: Id });
    app.get<{ Params: Record<string, string> }>(
      path,
      { schema: { tags, summary: `A ${param}'s quota and usage`, params, response: { 200: Quota, ...Errors } } },
      async (request) => {
        const caller = principalOf(request);
        return scope === 'user' ? quotas.viewUser(caller, (request.params[name] ?? '')) : quotas.viewTeam(caller, (request.params[name] ?? ''));
      },
    );
    app.put<{ Params: Record<string, string>; Body: Static<typeof QuotaBody> }>(
      path,
      { schema: { tags, summary: `Set a ${param}'s quota (admin)`, params, body: QuotaBody, response: { 200: Quota, ...Errors } } },
      async (request) => quotas.set(principalOf(request), scope, (request.params[name] ?? ''), request.body),
    );
    app.delete<{ Params: Record<string, string> }>(
      path,
      { schema: { tags, summary: `Reset a ${param}'s quota to the server defaults (admin)`, params, response: { 200: Quota, ...Errors } } },
      async (request) => quotas.clear(principalOf(request), scope, (request.params[name] ?? '')),
    );
  }
}

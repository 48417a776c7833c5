import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { AppServices } from '../app-services.js';

/** The isolation sandboxes get on this server (the runtime driver's report); null with runtime `none`. */
const IsolationSchema = Type.Union([
  Type.Object({
    userNamespace: Type.Boolean({ description: 'Root in a sandbox is an unprivileged host id' }),
    seccomp: Type.Boolean(),
    cgroupVersion: Type.Union([Type.Literal(1), Type.Literal(2)]),
    cgroupNamespace: Type.Boolean(),
    reason: Type.Optional(Type.String({ description: 'Why userNamespace is false' })),
  }),
  Type.Null(),
]);

/** `GET /healthz`: 200 once startup recovery has finished, 503 before, with the sandboxes' isolation. Needs no key. */
export function registerHealthRoutes(app: FastifyInstance, services: Pick<AppServices, 'isReady' | 'isolation'>): void {
  app.get(
    '/healthz',
    {
      config: { public: true },
      schema: {
        tags: ['Health'],
        summary: 'Health check',
        security: [],
        response: {
          200: Type.Object({ status: Type.String(), isolation: IsolationSchema }),
          503: Type.Object({ status: Type.String() }),
        },
      },
    },
    async (_request, reply) =>
      services.isReady() ? { status: 'ok', isolation: services.isolation() } : reply.code(503).send({ status: 'starting' }),
  );
}

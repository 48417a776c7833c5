import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { AppServices } from '../app.js';

/** `GET /healthz`: 200 once startup recovery has finished, 503 before. Needs no key. */
export function registerHealthRoutes(app: FastifyInstance, services: AppServices): void {
  app.get(
    '/healthz',
    {
      config: { public: true },
      schema: { tags: ['Health'], summary: 'Health check', security: [], response: { 200: Type.Object({ status: Type.String() }), 503: Type.Object({ status: Type.String() }) } },
    },
    async (_request, reply) => (services.isReady() ? { status: 'ok' } : reply.code(503).send({ status: 'starting' })),
  );
}

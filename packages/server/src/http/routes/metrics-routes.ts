import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiError } from '../../errors/api-error.js';
import type { AppServices } from '../app-services.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

function bearerOf(request: FastifyRequest): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
}

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/**
 * Checks a scrape against `CORRAL_METRICS`: `loopback` lets only requests from 127.0.0.1/::1 in
 * (403 otherwise), `key` wants `CORRAL_METRICS_KEY` or an admin API key as a bearer (401 without
 * a valid key, 403 for a key that is not an admin's), `open` lets anyone in.
 */
async function checkScrape(request: FastifyRequest, services: Pick<AppServices, 'config' | 'auth'>): Promise<void> {
  const mode = services.config.metrics;
  if (mode === 'open') return;
  if (mode === 'loopback') {
    if (!LOOPBACK.has(request.socket.remoteAddress ?? '')) {
      throw new ApiError('FORBIDDEN', 'GET /metrics answers only requests from the loopback address here (CORRAL_METRICS=loopback)');
    }
    return;
  }
  const token = bearerOf(request);
  const metricsKey = services.config.metricsKey;
  if (token !== undefined && metricsKey !== null && sameSecret(token, metricsKey)) return;
  const principal = await services.auth.authenticate(token);
  if (!principal.user.isAdmin) throw new ApiError('FORBIDDEN', 'GET /metrics needs an admin API key or the metrics key (CORRAL_METRICS=key)');
}

/** `GET /metrics`: the server's Prometheus metrics in text format, guarded by `CORRAL_METRICS` (absent when `off`). */
export function registerMetricsRoutes(app: FastifyInstance, services: Pick<AppServices, 'config' | 'auth' | 'metrics'>): void {
  if (services.config.metrics === 'off') return;
  app.get('/metrics', { config: { public: true }, schema: { hide: true } }, async (request, reply) => {
    await checkScrape(request, services);
    const { contentType, body } = await services.metrics.exposition();
    return reply.type(contentType).send(body);
  });
}

import fastifySwagger from '@fastify/swagger';
import Fastify, { type FastifyInstance, type FastifyRequest, LogController } from 'fastify';
import type { Logger } from 'pino';
import { ApiError } from '../errors/api-error.js';
import type { AppServices } from './app-services.js';
import { registerGateway } from '../gateway/index.js';
import { answerContinueEarly } from './early-continue.js';
import { registerDashboardRoutes } from './dashboard-routes.js';
import { errorHandler, frameworkErrorHandler, sendApiError } from './error-handler.js';
import { registerAdminRoutes } from './routes/admin-routes.js';
import { registerEgressRoutes } from './routes/egress-routes.js';
import { registerObserveRoutes } from './routes/observe-routes.js';
import { registerQuotaRoutes } from './routes/quota-routes.js';
import { registerExposureRoutes } from './routes/exposure-routes.js';
import { registerImageRoutes } from './routes/image-routes.js';
import { registerHealthRoutes } from './routes/health-routes.js';
import { registerMetricsRoutes } from './routes/metrics-routes.js';
import { registerSandboxActionRoutes } from './routes/sandbox-action-routes.js';
import { registerCheckpointRoutes } from './routes/checkpoint-routes.js';
import { registerSandboxRoutes } from './routes/sandbox-routes.js';
import { registerTemplateRoutes } from './routes/template-routes.js';
import { registerTunnelRoutes } from './routes/tunnel-routes.js';
import { registerWebhookRoutes } from './routes/webhook-routes.js';
import { validatorCompiler } from './validation.js';

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/**
 * Builds the HTTP application: the Prime-compatible management API under `/api/v1`, Corral's
 * administration routes, `/healthz`, `/openapi.json`, the data-plane gateway under `/gateway`, and
 * the web dashboard at `/` (its files under `/assets/`).
 * Routes validate and map; services decide. The network service's Host router goes in front of the
 * app's listeners once the app is ready, and stops when it closes.
 */
export async function buildApp(services: AppServices, logger: Logger | false = false): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger === false ? undefined : logger,
    logger: logger === false ? false : undefined,
    bodyLimit: 2 * 1024 * 1024,
    return503OnClosing: true,
    requestIdHeader: 'x-request-id',
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 256 },
    frameworkErrors: frameworkErrorHandler,
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  answerContinueEarly(app.server);
  app.setValidatorCompiler(validatorCompiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) =>
    sendApiError(reply, new ApiError('ROUTE_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`)),
  );

  // Clients (the Prime SDK among them) send `Content-Type: application/json` with an empty body on
  // POSTs that take none; an empty body is no body, not malformed JSON.
  // `__proto__` keys are dropped rather than refused: the JSON is valid, the key is simply never used.
  const defaultJson = app.getDefaultJsonParser('remove', 'ignore');
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (typeof body === 'string' && body.trim() === '') {
      done(null, undefined);
      return;
    }
    defaultJson(request, typeof body === 'string' ? body : body.toString('utf8'), done);
  });

  // API latency per route pattern (never per URL: ids would make a series each), method and status class.
  app.addHook('onResponse', async (request, reply) => {
    services.metrics.httpSeconds.observe(
      // `::` is how a route spells a literal colon (`status::batchGet`).
      { route: request.routeOptions.url?.replaceAll('::', ':') ?? 'unmatched', method: request.method, status_class: `${Math.floor(reply.statusCode / 100)}xx` },
      reply.elapsedTime / 1000,
    );
  });

  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config.public || request.is404) return;
    request.principal = await services.auth.authenticate(bearer(request));
  });
  app.addHook('preHandler', async (request) => {
    const name = request.routeOptions.config.rateLimit;
    if (!name || !request.principal) return;
    const params = request.params as Record<string, string | undefined>;
    const subject = params.sandbox_id ?? params.tunnel_id;
    const decision = services.rateLimiter.hit(name, request.principal.user.id, subject);
    if (!decision.allowed) {
      throw new ApiError('RATE_LIMITED', `Too Many Requests: rate limit for ${name} exceeded; retry after ${decision.retryAfterSeconds}s`, {
        retryAfterSeconds: decision.retryAfterSeconds,
      });
    }
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Corral Sandbox API', version: '0.1.0', description: 'Prime-compatible sandbox API served by Corral' },
      components: { securitySchemes: { HTTPBearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ HTTPBearer: [] }],
    },
  });

  registerHealthRoutes(app, services);
  registerMetricsRoutes(app, services);
  await app.register(
    async (api) => {
      registerSandboxRoutes(api, services);
      registerSandboxActionRoutes(api, services);
      registerCheckpointRoutes(api, services);
      registerEgressRoutes(api, services);
      registerObserveRoutes(api, services);
      registerExposureRoutes(api, services);
      registerTunnelRoutes(api, services);
      registerAdminRoutes(api, services);
      registerQuotaRoutes(api, services);
      registerTemplateRoutes(api, services);
      registerWebhookRoutes(api, services);
      await registerImageRoutes(api, services);
    },
    { prefix: '/api/v1' },
  );
  await app.register(async (gateway) => registerGateway(gateway, services.gateway), { prefix: '/gateway' });
  app.addHook('onReady', async () => services.network.start(app.server));
  app.addHook('preClose', async () => services.network.close());
  app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());
  registerDashboardRoutes(app, services);
  return app;
}

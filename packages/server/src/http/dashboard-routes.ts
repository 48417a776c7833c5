import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ApiError } from '../errors/api-error.js';
import type { AppServices } from './app-services.js';

/**
 * The dashboard's Content-Security-Policy: scripts only from this origin's files (no inline
 * script, no eval), network only to this origin (the API and the gateway's WebSocket), no frames,
 * no plugins. Inline styles are allowed: xterm.js's DOM renderer writes its cell sizes and theme
 * into `<style>` elements it creates.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.woff2': 'font/woff2',
  '.png': 'image/png',
};

/** A built file held in memory. */
interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/** The built dashboard `npm run build` writes (packages/server/dist/dashboard), from src/ or dist/ alike. */
function builtInDir(): string {
  return fileURLToPath(new URL('../../dist/dashboard/', import.meta.url));
}

function asset(body: Buffer, type: string): Asset {
  return { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
}

/** Reads a built dashboard: index.html and the files of assets/ (names from the build, content-hashed). */
function loadDashboard(dir: string): { index: Asset; assets: Map<string, Asset> } | null {
  const indexPath = join(dir, 'index.html');
  if (!existsSync(indexPath)) return null;
  const assets = new Map<string, Asset>();
  const assetDir = join(dir, 'assets');
  if (existsSync(assetDir)) {
    for (const name of readdirSync(assetDir)) {
      const type = TYPES[name.slice(name.lastIndexOf('.'))];
      if (type === undefined || !/^[A-Za-z0-9._-]+$/.test(name)) continue;
      assets.set(name, asset(readFileSync(join(assetDir, name)), type));
    }
  }
  return { index: asset(readFileSync(indexPath), 'text/html; charset=utf-8'), assets };
}

function send(reply: FastifyReply, file: Asset, cacheControl: string, ifNoneMatch: string | undefined): FastifyReply {
  reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cache-control', cacheControl)
    .header('etag', file.etag);
  if (ifNoneMatch === file.etag) return reply.code(304).send();
  return reply.type(file.type).send(file.body);
}

/**
 * The web dashboard (docs/dashboard.md): `GET /` is its page, `GET /assets/<file>` its bundled
 * script and styles, read once at start from `CORRAL_DASHBOARD_DIR` or the package's build. Both
 * are public (the page signs in with an API key of its own) and carry `DASHBOARD_CSP`. Nothing
 * else is served: other paths stay the API's, with its JSON 404s. With `CORRAL_DASHBOARD=off`
 * neither route exists; without a build, `/` answers a JSON 404 saying so.
 */
export function registerDashboardRoutes(app: FastifyInstance, { config }: Pick<AppServices, 'config'>): void {
  if (!config.dashboard) return;
  const dir = config.dashboardDir ?? builtInDir();
  const built = loadDashboard(dir);
  const options = { config: { public: true }, schema: { hide: true } };
  app.get('/', options, async (request, reply) => {
    if (built === null) throw new ApiError('ROUTE_NOT_FOUND', `The dashboard is not built (no ${join(dir, 'index.html')}): run npm run build`);
    return send(reply, built.index, 'no-cache', request.headers['if-none-match']);
  });
  app.get<{ Params: { file: string } }>('/assets/:file', options, async (request, reply) => {
    const file = built?.assets.get(request.params.file);
    if (file === undefined) throw new ApiError('ROUTE_NOT_FOUND', `No route GET ${request.url.split('?')[0]}`);
    return send(reply, file, 'public, max-age=31536000, immutable', request.headers['if-none-match']);
  });
}

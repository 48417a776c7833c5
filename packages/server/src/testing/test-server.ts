import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LightMyRequestResponse } from 'fastify';
import { loadConfig, type CorralConfig } from '../config.js';
import { LOCAL_TEST_REGISTRIES } from './local-registries.js';
import type { SandboxRuntime } from '../runtime/runtime.js';
import { pino, type Logger } from 'pino';
import { createCorralServer, type CorralServer } from '../server.js';
import { createRuntime } from '../runtime/create-runtime.js';

/** A Corral server on a fresh data dir, with a known admin key, for tests. */
export interface TestServer {
  server: CorralServer;
  adminKey: string;
  dataDir: string;
  /** In-process request with the admin key unless `key` is given (`null`: no key). */
  request(
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
    url: string,
    options?: { body?: unknown; key?: string | null; headers?: Record<string, string>; rawBody?: string },
  ): Promise<LightMyRequestResponse>;
  /** Creates a user with a key; returns both. */
  createUser(name: string, options?: { isAdmin?: boolean }): Promise<{ id: string; key: string }>;
  close(): Promise<void>;
}

/**
 * The log of a test server that was given none: silent but for unhandled errors (the 500s the
 * API answers "the server log has the details" for), which go to stderr, where the test runner
 * shows them beside the failing test.
 */
function unhandledErrorLogger(): Logger {
  return pino(
    { level: 'error' },
    {
      write(line: string) {
        if (/"msg":"[^"]*unhandled error"/.test(line)) process.stderr.write(`corral test server: ${line}`);
      },
    },
  );
}

/** Starts a server (not listening) with runtime `none` unless overridden. */
export async function startTestServer(
  overrides: Partial<CorralConfig> = {},
  env: NodeJS.ProcessEnv = {},
  options: { /** Used instead of the configured driver. */ runtime?: SandboxRuntime; /** Receives the server's log. */ logger?: Logger } = {},
): Promise<TestServer> {
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), 'corral-test-'));
  const adminKey = overrides.bootstrapApiKey ?? `corral_test_admin_${Math.random().toString(36).slice(2)}`;
  const config = loadConfig({
    env,
    overrides: { runtime: 'none', logLevel: 'silent', rateLimits: false, port: 0, registryInsecure: [...LOCAL_TEST_REGISTRIES], ...overrides, dataDir, bootstrapApiKey: adminKey },
  });
  const server = await createCorralServer(config, { ...(options.runtime ? { runtime: options.runtime } : {}), logger: options.logger ?? unhandledErrorLogger() });
  const request: TestServer['request'] = (method, url, options = {}) => {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    const key = options.key === undefined ? adminKey : options.key;
    if (key !== null) headers.authorization = `Bearer ${key}`;
    if (options.body !== undefined || options.rawBody !== undefined) headers['content-type'] ??= 'application/json';
    return server.app.inject({
      method,
      url,
      headers,
      ...(options.rawBody !== undefined ? { payload: options.rawBody } : options.body !== undefined ? { payload: JSON.stringify(options.body) } : {}),
    });
  };
  return {
    server,
    adminKey,
    dataDir,
    request,
    async createUser(name, options = {}) {
      const user = await request('POST', '/api/v1/users', { body: { name, is_admin: options.isAdmin ?? false } });
      if (user.statusCode !== 201) throw new Error(`create user: ${user.statusCode} ${user.body}`);
      const { id } = user.json<{ id: string }>();
      const key = await request('POST', '/api/v1/keys', { body: { user_id: id, name: 'test' } });
      if (key.statusCode !== 201) throw new Error(`create key: ${key.statusCode} ${key.body}`);
      return { id, key: key.json<{ key: string }>().key };
    },
    async close() {
      await server.close();
      if (!overrides.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A test server listening on a loopback port, with the runtime's containers removed on close. */
export interface ListeningTestServer {
  t: TestServer;
  url: string;
  /** Removes every container this server made, then closes it. */
  close(): Promise<void>;
}

/** Starts a listening server (docker runtime unless overridden) with a unique instance id named after `prefix`. */
export async function startListeningServer(prefix: string, overrides: Partial<CorralConfig> = {}, options: { logger?: Logger } = {}): Promise<ListeningTestServer> {
  const t = await startTestServer({ runtime: 'docker', instanceId: `${prefix}-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 500, ...overrides }, {}, options);
  const url = await t.server.listen();
  return {
    t,
    url,
    async close() {
      const runtime = t.server.runtime;
      if (runtime) for (const s of await runtime.list()) await runtime.remove(s.runtimeId).catch(() => undefined);
      await t.server.close();
      // Removing sandboxes frees admission capacity, so creates still queued may start while the
      // server closes; closing leaves them running, as a restart would adopt them. A driver opened
      // again on the same state removes them before the data dir goes.
      if (runtime) await removeLeftovers(t.server.config);
      await t.close();
    },
  };
}

/** Removes every sandbox a driver opened on `config`'s state still has (what a closed test server left running). */
async function removeLeftovers(config: CorralConfig): Promise<void> {
  const runtime = await createRuntime(config).catch(() => null);
  if (!runtime) return;
  try {
    for (const s of await runtime.list()) await runtime.remove(s.runtimeId).catch(() => undefined);
  } finally {
    await runtime.close();
  }
}

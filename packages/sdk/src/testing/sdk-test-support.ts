import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import type { CorralConfig } from '../../../server/src/config.js';
import { type TestServer, startTestServer } from '../../../server/src/testing/test-server.js';

/** The small image SDK tests run sandboxes from. */
export const TEST_IMAGE = process.env.CORRAL_TEST_IMAGE ?? 'corral-test/busybox:latest';

/** Why Docker-backed tests cannot run here, or undefined when they can. */
export function dockerMissing(image = TEST_IMAGE): string | undefined {
  try {
    execFileSync('docker', ['image', 'inspect', image], { stdio: 'ignore', timeout: 10_000 });
    return undefined;
  } catch {
    return `no Docker engine with image ${image} (run scripts/ensure-docker.sh)`;
  }
}

/** Skips without Docker, except on CI (`CI=true`), where it fails. Returns true when the test should go on. */
export function needDocker(t: TestContext, image = TEST_IMAGE): boolean {
  const reason = dockerMissing(image);
  if (reason === undefined) return true;
  if (process.env.CI === 'true') throw new Error(reason);
  t.skip(reason);
  return false;
}

/** A listening server for SDK tests. */
export interface ListeningServer {
  t: TestServer;
  url: string;
  close(): Promise<void>;
}

/** Starts a listening server (docker runtime unless overridden) with a unique instance id; `close` removes its containers. */
export async function startServer(overrides: Partial<CorralConfig> = {}): Promise<ListeningServer> {
  const t = await startTestServer({ runtime: 'docker', instanceId: `sdk-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 300, ...overrides });
  const url = await t.server.listen();
  return {
    t,
    url,
    async close() {
      const runtime = t.server.runtime;
      if (runtime) for (const s of await runtime.list()) await runtime.remove(s.runtimeId).catch(() => undefined);
      await t.close();
    },
  };
}

/** A `fetch` that records `METHOD path` of every call. */
export function recordingFetch(): { fetch: typeof fetch; calls: Array<{ method: string; path: string; body: string | undefined }> } {
  const calls: Array<{ method: string; path: string; body: string | undefined }> = [];
  return {
    calls,
    fetch: (input, init) => {
      const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
      calls.push({ method: init?.method ?? 'GET', path: url.pathname, body: typeof init?.body === 'string' ? init.body : undefined });
      return fetch(input, init);
    },
  };
}

import type { TestContext } from 'node:test';
import type { CorralConfig } from '@corral/server';
import { TEST_IMAGE, dockerMissing, needNothingMissing, type ListeningTestServer, startListeningServer } from '@corral/server/testing';

export { TEST_IMAGE, dockerMissing } from '@corral/server/testing';

/** Skips without Docker, except on CI (`CI=true`), where it fails. Returns true when the test should go on. */
export function needDocker(t: TestContext, image = TEST_IMAGE): boolean {
  return needNothingMissing(t, dockerMissing(image));
}

/** A listening server for SDK tests. */
export type ListeningServer = ListeningTestServer;

/** Starts a listening server (docker runtime unless overridden) with a unique instance id; `close` removes its containers. */
export function startServer(overrides: Partial<CorralConfig> = {}): Promise<ListeningServer> {
  return startListeningServer('sdk', { reconcileIntervalMs: 300, ...overrides });
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

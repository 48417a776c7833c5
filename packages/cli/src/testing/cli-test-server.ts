import type { TestContext } from 'node:test';
import { type ListeningTestServer, TEST_IMAGE, dockerMissing, needNothingMissing, startListeningServer } from '@corral/server/testing';

export { TEST_IMAGE, dockerMissing } from '@corral/server/testing';

/** Skips without Docker, except on CI (`CI=true`), where it fails. Returns true when the test should go on. */
export function needDocker(t: TestContext, image = TEST_IMAGE): boolean {
  return needNothingMissing(t, dockerMissing(image));
}

/** A listening server for CLI tests. */
export type ListeningServer = ListeningTestServer;

/** Starts a listening server (docker runtime unless overridden) with a unique instance id; `close` removes its containers. */
export function startServer(overrides: Parameters<typeof startListeningServer>[1] = {}): Promise<ListeningServer> {
  return startListeningServer('cli', { reconcileIntervalMs: 300, ...overrides });
}

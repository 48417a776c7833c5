import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CorralClient } from './client.js';
import { ConnectionError } from './errors.js';
import { Sandbox } from './sandbox.js';

test("waitUntilRunning's readiness probe tries again when the connection is cut (a replica restarting), within its deadline", async () => {
  const running = { id: 'sbx1', status: 'RUNNING', errorType: null, errorMessage: null };
  // Only what connect and waitUntilRunning ask for.
  const client = { sandboxes: { get: async () => running }, statuses: { get: async () => running } } as unknown as CorralClient;
  const sandbox = await Sandbox.connect(client, 'sbx1');
  let tries = 0;
  sandbox.exec = async () => {
    tries += 1;
    if (tries === 1) throw new ConnectionError('exec in sandbox sbx1: Cannot reach Corral at http://127.0.0.1:1 (UND_ERR_SOCKET: other side closed).');
    return { stdout: 'sandbox ready\n', stderr: '', exitCode: 0 } as Awaited<ReturnType<Sandbox['exec']>>;
  };
  await sandbox.waitUntilRunning({ timeoutMs: 10_000 });
  assert.equal(tries, 2);
});

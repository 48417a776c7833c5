import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { test } from 'node:test';
import { trackUnusedConnections } from './unused-connections.js';

test('closing destroys connections that never sent a request, and lets a request in flight finish', async () => {
  let finish: (() => void) | undefined;
  const server = createServer((_request, response) => {
    finish = () => response.end('done');
  });
  const destroyUnused = trackUnusedConnections(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const idle = connect(port, '127.0.0.1');
  await new Promise((resolve) => idle.once('connect', resolve));
  const idleClosed = new Promise((resolve) => idle.once('close', resolve));
  const busy = fetch(`http://127.0.0.1:${port}/`).then((r) => r.text());
  while (!finish) await new Promise((resolve) => setTimeout(resolve, 10));

  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  destroyUnused();
  await idleClosed;
  finish();
  assert.equal(await busy, 'done', 'the request in flight was answered');
  // Without destroyUnused the server would wait for the unused connection (about a minute).
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the server did not close')), 10_000))]);
});

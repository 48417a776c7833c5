import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Tracks connections that have not carried a request yet (clients open them ahead, e.g. undici's
 * pool). Node 20's `server.close()` waits for them, and `closeIdleConnections()` leaves them
 * alone until the headers timeout reaps them (about a minute), so a server shutting down hung that
 * long. Returns the function that destroys them; call it once the server stops accepting.
 */
export function trackUnusedConnections(server: Server): () => void {
  const unused = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    unused.add(socket);
    socket.once('close', () => unused.delete(socket));
  });
  server.on('request', (request: { socket: Socket }) => unused.delete(request.socket));
  server.on('upgrade', (request: { socket: Socket }) => unused.delete(request.socket));
  return () => {
    for (const socket of unused) socket.destroy();
    unused.clear();
  };
}

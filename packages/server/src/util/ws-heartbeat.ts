import type { WebSocket } from 'ws';

/**
 * Pings `ws` every `intervalMs` and terminates it when the previous ping got no pong (a peer that
 * vanished without closing). Stops by itself when the socket closes.
 */
export function keepAlive(ws: WebSocket, intervalMs: number): void {
  let alive = true;
  ws.on('pong', () => (alive = true));
  const heartbeat = setInterval(() => {
    if (!alive) ws.terminate();
    alive = false;
    ws.ping();
  }, intervalMs);
  heartbeat.unref();
  ws.once('close', () => clearInterval(heartbeat));
}

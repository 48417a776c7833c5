import type { Socket } from 'node:net';

/**
 * Watches a transfer's socket and calls `onIdle` once when no byte has been read from or written
 * to it for `idleMs` (a client that stopped sending an upload or reading a download, or a
 * transfer the sandbox side stopped feeding). Progress is the socket's own byte counters, so
 * bytes queued in memory but not taken by the peer do not count. Returns a function that stops
 * watching.
 */
export function watchTransferIdle(socket: Socket | null | undefined, idleMs: number, onIdle: () => void): () => void {
  if (!socket) return () => undefined;
  let last = socket.bytesRead + socket.bytesWritten;
  let lastChange = Date.now();
  const timer = setInterval(
    () => {
      const now = socket.bytesRead + socket.bytesWritten;
      if (now !== last) {
        last = now;
        lastChange = Date.now();
        return;
      }
      if (Date.now() - lastChange >= idleMs) {
        clearInterval(timer);
        onIdle();
      }
    },
    Math.max(50, Math.min(1000, Math.floor(idleMs / 4))),
  );
  timer.unref();
  return () => clearInterval(timer);
}

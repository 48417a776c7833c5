import { createServer, type Server, type Socket } from 'node:net';

/** Parses `from-to`. */
export function parsePortRange(range: string): { from: number; to: number } {
  const [from, to] = range.split('-').map(Number);
  return { from: from ?? 30000, to: to ?? 30999 };
}

/** A TCP listener on the host that forwards each connection somewhere, and the connections it holds. */
export interface TcpForwarder {
  server: Server;
  port: number;
  sockets: Set<Socket>;
  /** Stops listening and cuts every connection. */
  close(): Promise<void>;
}

/** Listens on `host:port` and hands each accepted socket to `onConnection`. Rejects with EADDRINUSE and the like. */
export function listenTcp(host: string, port: number, onConnection: (socket: Socket) => void): Promise<TcpForwarder> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.removeListener('error', reject);
      server.on('error', () => undefined);
      const address = server.address();
      resolve({
        server,
        port: typeof address === 'object' && address ? address.port : port,
        sockets,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

import { type IncomingMessage, type ServerResponse, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A stand-in for a Kubernetes Service in front of several replicas. */
export interface RoundRobinForwarder {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Requests forwarded, per backend port. */
  forwarded: Map<number, number>;
  /** Connections a backend cut or refused: port, error code, method and path. */
  failures: string[];
  close(): Promise<void>;
}

/**
 * An HTTP forwarder on a loopback port that sends each request to the next of `backends` (ports on
 * 127.0.0.1) in turn, skipping a backend that refuses the connection (a dead replica): the request
 * body is buffered, so a request that never reached a backend goes to the next one. A backend that
 * dies after it got the request cuts the client's connection, as a Service would; the client's
 * retries decide what happens next. Plain HTTP only (no upgrades).
 */
export async function startRoundRobinForwarder(backends: readonly number[]): Promise<RoundRobinForwarder> {
  let next = 0;
  const forwarded = new Map<number, number>();
  const failures: string[] = [];

  /** Sends the request to backend `index`, else (refused) to the next ones in order; 503 once each refused. */
  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer, index: number, tried: number): void => {
    if (tried >= backends.length) {
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ detail: 'no live backend' }));
      return;
    }
    const port = backends[index % backends.length] as number;
    const upstream = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: { ...req.headers, host: `127.0.0.1:${port}` }, agent: false });
    let answered = false;
    upstream.on('response', (response) => {
      answered = true;
      forwarded.set(port, (forwarded.get(port) ?? 0) + 1);
      res.writeHead(response.statusCode ?? 502, response.headers);
      response.pipe(res);
      response.on('error', () => res.destroy());
      response.on('aborted', () => res.destroy());
    });
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      failures.push(`${port} ${error.code ?? error.message} ${req.method ?? ''} ${req.url ?? ''}`);
      if (answered) {
        res.destroy();
      } else if (error.code === 'ECONNREFUSED') {
        forward(req, res, body, index + 1, tried + 1);
      } else {
        // Reached the backend, which died before answering: the client sees the connection cut.
        res.destroy();
      }
    });
    upstream.end(body);
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => forward(req, res, Buffer.concat(chunks), next++, 0));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    forwarded,
    failures,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/** What kind of SQL statement a text is, by its first keyword (a `WITH … INSERT` counts as the write). */
export function statementKind(sql: string): string {
  const text = sql.trim().toLowerCase();
  const first = /^[a-z]+/.exec(text)?.[0] ?? 'other';
  if (first === 'with') return /\b(insert|update|delete)\b/.exec(text)?.[1] ?? 'select';
  if (first === 'start') return 'begin';
  return ['select', 'insert', 'update', 'delete', 'begin', 'commit', 'rollback'].includes(first) ? first : 'other';
}

/** Statement counts by kind. */
export type StatementCounts = Record<string, number>;

/** A PostgreSQL proxy that counts the statements its clients execute. */
export interface PgCountingProxy {
  port: number;
  /** Statements executed since the last reset, by kind (`select`, `insert`, `update`, `delete`, `begin`, `commit`, …). */
  counts(): StatementCounts;
  reset(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of PostgreSQL that reads the frontend protocol (v3) of each connection: a
 * simple `Query` counts once; with the extended protocol, each `Execute` counts the statement its
 * portal was bound from (`Parse` maps statement names to SQL, `Bind` names the statement). Bytes
 * pass through unchanged. No TLS (the test database has none).
 */
export async function startPgCountingProxy(upstreamHost: string, upstreamPort: number): Promise<PgCountingProxy> {
  let counts: StatementCounts = {};
  const count = (sql: string): void => {
    const kind = statementKind(sql);
    counts[kind] = (counts[kind] ?? 0) + 1;
  };
  const sockets = new Set<Socket>();
  const server = createNetServer((client) => {
    const upstream = netConnect(upstreamPort, upstreamHost);
    sockets.add(client).add(upstream);
    const statements = new Map<string, string>();
    let bound = '';
    let started = false;
    let buffer = Buffer.alloc(0);
    const cstring = (b: Buffer, at: number): [string, number] => {
      const end = b.indexOf(0, at);
      return [b.toString('utf8', at, end), end + 1];
    };
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (!started) {
          if (buffer.length < 8) return;
          const length = buffer.readInt32BE(0);
          if (buffer.length < length) return;
          const code = buffer.readInt32BE(4);
          // SSLRequest / GSSENCRequest are followed by another startup message.
          if (code !== 80877103 && code !== 80877104) started = true;
          buffer = buffer.subarray(length);
          continue;
        }
        if (buffer.length < 5) return;
        const type = String.fromCharCode(buffer[0] as number);
        const length = buffer.readInt32BE(1);
        if (buffer.length < 1 + length) return;
        const body = buffer.subarray(5, 1 + length);
        buffer = buffer.subarray(1 + length);
        if (type === 'Q') count(cstring(body, 0)[0]);
        else if (type === 'P') {
          const [name, at] = cstring(body, 0);
          statements.set(name, cstring(body, at)[0]);
        } else if (type === 'B') {
          const [, at] = cstring(body, 0);
          bound = statements.get(cstring(body, at)[0]) ?? '';
        } else if (type === 'E') count(bound);
      }
    });
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    counts: () => ({ ...counts }),
    reset: () => {
      counts = {};
    },
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** API-server traffic since the last reset. */
export interface ApiCounts {
  /** Requests by `<verb> <resource>` (`create pods`, `get pods/exec`, `watch pods`, `list nodes`). */
  calls: Record<string, number>;
  /** Bytes of watch event streams the API server sent. */
  watchBytes: number;
  /** Watch events received (one JSON object per line). */
  watchEvents: number;
  /** Bytes carried over exec websockets, both ways. */
  execBytes: number;
}

/** A plain-HTTP proxy in front of the Kubernetes API server that counts calls and watch traffic. */
export interface ApiCountingProxy {
  url: string;
  counts(): ApiCounts;
  reset(): void;
  close(): Promise<void>;
}

/** `GET /api/v1/namespaces/ns/pods/x/exec?…` → `get pods/exec`; a GET with `watch=true` → `watch`. */
export function describeApiCall(method: string, url: string): string {
  const parsed = new URL(url, 'http://x');
  const parts = parsed.pathname.split('/').filter(Boolean);
  // /api/v1/... or /apis/<group>/<version>/...
  const rest = parts[0] === 'api' ? parts.slice(2) : parts.slice(3);
  const group = parts[0] === 'apis' ? `${parts[1]}/` : '';
  const scoped = rest[0] === 'namespaces' && rest.length >= 3 ? rest.slice(2) : rest;
  const [resource = '', name, sub] = scoped;
  const watch = ['true', '1'].includes(parsed.searchParams.get('watch') ?? '');
  let verb: string;
  if (method === 'GET') verb = watch ? 'watch' : name === undefined ? 'list' : 'get';
  else verb = ({ POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } as Record<string, string>)[method] ?? method.toLowerCase();
  return `${verb} ${group}${resource}${sub ? `/${sub}` : ''}`;
}

/**
 * Listens on loopback over plain HTTP and forwards every request (and websocket upgrade) to the API
 * server over TLS, with the caller's headers (a bearer token authenticates through it). Give the
 * client a kubeconfig whose server is {@link ApiCountingProxy.url}.
 */
export async function startApiCountingProxy(upstream: URL, ca: Buffer): Promise<ApiCountingProxy> {
  let counts: ApiCounts = { calls: {}, watchBytes: 0, watchEvents: 0, execBytes: 0 };
  const note = (req: IncomingMessage): string => {
    const what = describeApiCall(req.method ?? 'GET', req.url ?? '/');
    counts.calls[what] = (counts.calls[what] ?? 0) + 1;
    return what;
  };
  const host = upstream.hostname;
  const port = Number(upstream.port || 443);
  const sockets = new Set<Socket>();
  const server = createHttpServer((req, res) => {
    const what = note(req);
    const forwarded = httpsRequest({ host, port, ca, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      // A watch answers headers at once and events later: pass the headers on now.
      res.flushHeaders();
      if (what.startsWith('watch ')) {
        answer.on('data', (chunk: Buffer) => {
          counts.watchBytes += chunk.length;
          for (const byte of chunk) if (byte === 0x0a) counts.watchEvents++;
        });
      }
      answer.pipe(res);
    });
    forwarded.on('error', () => res.destroy());
    req.pipe(forwarded);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    note(req);
    const upstreamSocket = tlsConnect({ host, port, ca, servername: host === '127.0.0.1' ? undefined : host }, () => {
      const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i] as string;
        lines.push(`${name}: ${name.toLowerCase() === 'host' ? upstream.host : (req.rawHeaders[i + 1] as string)}`);
      }
      upstreamSocket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) upstreamSocket.write(head);
      socket.on('data', (chunk: Buffer) => (counts.execBytes += chunk.length));
      upstreamSocket.on('data', (chunk: Buffer) => (counts.execBytes += chunk.length));
      socket.pipe(upstreamSocket).pipe(socket);
    });
    const end = (): void => {
      socket.destroy();
      upstreamSocket.destroy();
    };
    socket.on('error', end).on('close', end);
    upstreamSocket.on('error', end).on('close', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    counts: () => ({ ...counts, calls: { ...counts.calls } }),
    reset: () => {
      counts = { calls: {}, watchBytes: 0, watchEvents: 0, execBytes: 0 };
    },
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

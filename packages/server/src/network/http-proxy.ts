import { type IncomingHttpHeaders, type IncomingMessage, type RequestOptions, type ServerResponse, request as httpRequest, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/** Opens a byte stream to a port; rejects when it cannot even start. */
export type Dialer = () => Promise<Duplex>;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A small HTML error page (with a plain-text fallback for non-browsers in the body's first line). */
export function errorPage(status: number, title: string, detail: string): string {
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>${status} ${escapeHtml(title)}</title></head>` +
    `<body style="font-family:sans-serif;max-width:40em;margin:3em auto"><h1>${status} ${escapeHtml(title)}</h1><p>${escapeHtml(detail)}</p>` +
    `<p><small>Corral proxy</small></p></body></html>\n`;
}

/** Answers a plain HTTP request with an error page. */
export function sendErrorPage(res: ServerResponse, status: number, title: string, detail: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorPage(status, title, detail);
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(body);
}

/** Answers an upgrade request on its raw socket with an error page and closes it. */
export function refuseUpgradeWithPage(socket: Duplex, status: number, title: string, detail: string): void {
  const body = errorPage(status, title, detail);
  socket.on('error', () => undefined);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function forwardHeaders(req: IncomingMessage, dropQueryToken: boolean): IncomingHttpHeaders {
  const headers: IncomingHttpHeaders = {};
  const connectionTokens = new Set((req.headers.connection ?? '').split(',').map((t) => t.trim().toLowerCase()));
  for (const [name, value] of Object.entries(req.headers)) {
    if (HOP_BY_HOP.has(name) || connectionTokens.has(name) || value === undefined) continue;
    if (dropQueryToken && name === 'x-corral-exposure-token') continue;
    headers[name] = value;
  }
  const remote = req.socket.remoteAddress ?? '';
  headers['x-forwarded-for'] = req.headers['x-forwarded-for'] ? `${String(req.headers['x-forwarded-for'])}, ${remote}` : remote;
  headers['x-forwarded-host'] = req.headers.host ?? '';
  headers['x-forwarded-proto'] = 'encrypted' in req.socket ? 'https' : 'http';
  return headers;
}

/** What a proxy call needs besides the request. */
export interface ProxyTarget {
  dial: Dialer;
  /** Shown on the 502 page: "port 8000 of sandbox …". */
  describe: string;
  /** Called with every upstream stream opened, so its owner can cut it when the exposure goes. */
  track?: (stream: Duplex) => void;
  /** The request URL to send upstream (defaults to the incoming one). */
  path?: string;
}

/**
 * Forwards one HTTP request to the target over a fresh upstream connection and streams the
 * response back (chunked and long-lived responses flow as they arrive; bodies are never
 * buffered). A target that refuses or drops the connection before answering gets a 502 page.
 */
export function proxyHttp(req: IncomingMessage, res: ServerResponse, target: ProxyTarget): void {
  let upstreamSocket: Duplex | null = null;
  const createConnection = (_options: unknown, callback: (error: Error | null, socket?: Duplex) => void): undefined => {
    target.dial().then(
      (socket) => {
        upstreamSocket = socket;
        target.track?.(socket);
        callback(null, socket);
      },
      (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
    );
    return undefined;
  };
  const options: RequestOptions = {
    method: req.method,
    path: target.path ?? req.url,
    headers: forwardHeaders(req, true),
    createConnection: createConnection as unknown as RequestOptions['createConnection'],
  };
  const upstream = httpRequest(options);
  upstream.on('response', (upRes) => {
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(upRes.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      headers[name] = value;
    }
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, headers);
    res.flushHeaders();
    upRes.pipe(res);
    upRes.on('error', () => res.destroy());
  });
  upstream.on('error', (error) => {
    sendErrorPage(res, 502, 'Bad Gateway', `Nothing answered on ${target.describe} (${error.message}). Is the server inside listening yet?`);
  });
  res.on('close', () => {
    if (!res.writableFinished) {
      upstream.destroy();
      upstreamSocket?.destroy();
    }
  });
  req.pipe(upstream);
}

/**
 * Forwards an upgrade (WebSocket) request: replays the request head on a fresh upstream
 * connection, then splices the two sockets together byte for byte.
 */
export function proxyUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: ProxyTarget): void {
  socket.on('error', () => undefined);
  target.dial().then(
    (upstream) => {
      target.track?.(upstream);
      upstream.on('error', () => socket.destroy());
      socket.on('error', () => upstream.destroy());
      socket.on('close', () => upstream.destroy());
      upstream.on('close', () => socket.destroy());
      const lines = [`${req.method ?? 'GET'} ${target.path ?? req.url ?? '/'} HTTP/1.1`];
      const forwarded = forwardHeaders(req, true);
      for (const [name, value] of Object.entries(forwarded)) {
        for (const v of Array.isArray(value) ? value : [value ?? '']) lines.push(`${name}: ${v}`);
      }
      lines.push(`connection: ${req.headers.connection ?? 'Upgrade'}`, `upgrade: ${req.headers.upgrade ?? 'websocket'}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    },
    (error: unknown) => {
      refuseUpgradeWithPage(socket, 502, 'Bad Gateway', `Nothing answered on ${target.describe} (${error instanceof Error ? error.message : String(error)})`);
    },
  );
}

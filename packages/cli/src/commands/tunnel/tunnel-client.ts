import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';

/**
 * The tunnel link's framing, as the server speaks it (packages/server/src/network/tunnel-frames.ts):
 * one WebSocket binary message per frame, `[op u8][stream id u32 BE][payload]`.
 */
const FRAME = { OPEN: 1, DATA: 2, END: 3, RESET: 4 } as const;
/** Close codes (and refusal statuses) after which reconnecting is pointless. */
const FINAL_CLOSE_CODES = new Set([4403, 4404, 4410]);
const FINAL_STATUSES = new Set([401, 403, 404, 410]);

function frame(op: number, id: number, payload?: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(op, 0);
  header.writeUInt32BE(id, 1);
  return payload && payload.length > 0 ? Buffer.concat([header, payload]) : header;
}

/** How to reach the server and what to serve. */
export interface TunnelClientOptions {
  /** `ws(s)://…/api/v1/tunnel/{id}/connect`. */
  connectUrl: string;
  apiKey: string;
  bindingSecret: string;
  localPort: number;
  localHost?: string;
  /** Progress lines (connected, reconnecting, …). */
  onStatus?: (message: string) => void;
}

/** A running tunnel client. */
export interface TunnelClient {
  /** Resolves when the client stops for good: `stop()`, or the server refused or ended the tunnel (rejects then). */
  done: Promise<void>;
  stop(): void;
}

/**
 * Holds the tunnel's WebSocket and serves each stream the server opens by connecting to the local
 * port. Reconnects with back-off when the link drops, until stopped or the tunnel is gone.
 */
export function startTunnelClient(options: TunnelClientOptions): TunnelClient {
  const status = options.onStatus ?? (() => undefined);
  let stopped = false;
  let ws: WebSocket | null = null;
  let retryTimer: NodeJS.Timeout | null = null;
  let delay = 250;
  let finish: (error?: Error) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = (error) => (error ? reject(error) : resolve());
  });

  const link = (): void => {
    const sockets = new Map<number, Socket>();
    const socket = new WebSocket(options.connectUrl, {
      headers: { authorization: `Bearer ${options.apiKey}`, 'x-corral-binding-secret': options.bindingSecret },
      perMessageDeflate: false,
    });
    ws = socket;
    const send = (op: number, id: number, payload?: Buffer): void => {
      if (socket.readyState === socket.OPEN) socket.send(frame(op, id, payload), { binary: true });
    };
    socket.on('open', () => {
      delay = 250;
      status(`connected; forwarding to ${options.localHost ?? '127.0.0.1'}:${options.localPort}`);
    });
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary || data.length < 5) return;
      const op = data.readUInt8(0);
      const id = data.readUInt32BE(1);
      const payload = data.subarray(5);
      if (op === FRAME.OPEN) {
        const local = connect({ host: options.localHost ?? '127.0.0.1', port: options.localPort });
        sockets.set(id, local);
        let ended = false;
        local.on('data', (chunk: Buffer) => send(FRAME.DATA, id, chunk));
        local.on('end', () => {
          ended = true;
          send(FRAME.END, id);
        });
        local.on('error', (error) => {
          if (sockets.delete(id)) send(FRAME.RESET, id, Buffer.from(`local port ${options.localPort}: ${error.message}`));
        });
        // A close after a clean end needs no RESET: the server has END and drains what it holds.
        local.on('close', () => {
          if (sockets.delete(id) && !ended) send(FRAME.RESET, id);
        });
        return;
      }
      const local = sockets.get(id);
      if (!local) return;
      if (op === FRAME.DATA) local.write(payload);
      else if (op === FRAME.END) local.end();
      else if (op === FRAME.RESET) {
        sockets.delete(id);
        local.destroy();
      }
    });
    socket.on('unexpected-response', (_request, response) => {
      const code = response.statusCode ?? 0;
      let body = '';
      response.on('data', (c: Buffer) => (body += c.toString('utf8')));
      response.on('end', () => {
        socket.terminate();
        if (FINAL_STATUSES.has(code)) {
          stopped = true;
          let detail = body;
          try {
            detail = (JSON.parse(body) as { detail?: string }).detail ?? body;
          } catch {
            // Not JSON: show it as it is.
          }
          finish(new Error(`the server refused the tunnel (HTTP ${code}): ${detail}`));
        }
      });
    });
    socket.on('error', () => undefined);
    socket.on('close', (code: number, reason: Buffer) => {
      for (const local of sockets.values()) local.destroy();
      sockets.clear();
      if (stopped) return;
      if (FINAL_CLOSE_CODES.has(code)) {
        stopped = true;
        finish(new Error(`the server ended the tunnel: ${reason.toString('utf8') || code}`));
        return;
      }
      status(`link lost; reconnecting in ${delay} ms`);
      retryTimer = setTimeout(link, delay);
      delay = Math.min(delay * 2, 10_000);
    });
  };

  link();
  return {
    done,
    stop() {
      if (stopped) return;
      stopped = true;
      if (retryTimer) clearTimeout(retryTimer);
      ws?.close(1000, 'client stopped');
      finish();
    },
  };
}

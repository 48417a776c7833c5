import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * Answers `100 Continue` at once to a request whose body has not arrived with its head.
 *
 * Clients that write the request head and the body in two writes without TCP_NODELAY (the
 * Prime SDK's sync `httpx.Client`: its control-plane POSTs — create, `status:batchGet` — on a
 * kept-alive connection) hold the body back until the head is acknowledged (Nagle), while this
 * host's kernel delays that acknowledgement until it has something to send (delayed ACK, 40 ms
 * on Linux). Nothing moves for 40 ms per request. The interim response carries the ACK, so the body
 * follows at once. RFC 9110 §15.2 requires clients to accept 1xx responses they did not ask for;
 * it is sent only for a small body (Content-Length ≤ 64 KiB) still wholly missing once the head
 * has been parsed, never after the final response has started, and never twice — and only to
 * clients known to accept it (the Prime SDK and CLI, httpx, curl): undici (Node's `fetch`, and so
 * `@corral/sdk`) fails a request with "bad response" on any 1xx it did not ask for, RFC or not.
 */
export function answerContinueEarly(server: Server): void {
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    // 1xx exist from HTTP/1.1 on; a client that asked with Expect gets Node's own answer.
    if (request.httpVersion === '1.0' || !expectsBody(request) || request.headers.expect !== undefined) return;
    if (!acceptsUnaskedInterim(request.headers['user-agent'])) return;
    // Body bytes that came in the same read as the head are parsed (and buffered, or complete)
    // before this runs; nothing here reads the body, so the route's parser still gets all of it.
    setImmediate(() => {
      if (request.complete || request.readableLength > 0 || request.readableEnded) return;
      if (response.headersSent || response.writableEnded || response.destroyed) return;
      response.writeContinue();
    });
  });
}

/** The largest body the interim answer is sent for: JSON calls, not uploads or large commands. */
const SMALL_BODY_BYTES = 64 * 1024;

/**
 * A small body of known length. Large or chunked bodies (uploads, megabyte commands) are left
 * alone: their clients stream them without waiting on Nagle, and some (undici) refuse an interim
 * answer that arrives while they are still writing the body.
 */
function expectsBody(request: IncomingMessage): boolean {
  const length = Number(request.headers['content-length'] ?? NaN);
  return Number.isInteger(length) && length > 0 && length <= SMALL_BODY_BYTES && request.headers['transfer-encoding'] === undefined;
}

/** User agents whose HTTP stacks skip a `100 Continue` they did not ask for (h11/httpx, curl). */
const INTERIM_TOLERANT_AGENTS = /^(prime-sandboxes\/|prime\/|prime-cli\/|python-httpx\/|curl\/)/;

/** Whether a client with this User-Agent accepts an interim answer it did not ask for. */
export function acceptsUnaskedInterim(userAgent: string | undefined): boolean {
  return userAgent !== undefined && INTERIM_TOLERANT_AGENTS.test(userAgent);
}

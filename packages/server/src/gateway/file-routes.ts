import { PassThrough, type Readable } from 'node:stream';
import busboy from 'busboy';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GATEWAY_ERRORS } from '../errors/error-codes.js';
import { RuntimeError } from '../runtime/runtime.js';
import { type GatewayContext, type GatewayParams, actorOf, clientGone, runtimeFailure, targetOf } from './gateway-context.js';
import { GatewayError, invalid, sandboxNotFound } from '../errors/gateway-error.js';
import type { GatewayTarget } from './gateway-target.js';
import { MAX_READ_BYTES, readWindow } from './read-window.js';
import { watchTransferIdle } from './transfer-idle.js';

type FileQuery = { path?: string; offset?: string; length?: string; sandbox_id?: string };
type FileRoute = { Params: GatewayParams; Querystring: FileQuery };

function pathParam(query: FileQuery, absolute: boolean): string {
  const path = query.path;
  if (typeof path !== 'string' || path === '') throw invalid('path: required');
  if (path.includes('\0')) throw invalid('path: must not contain NUL bytes');
  if (absolute && !path.startsWith('/')) throw invalid(`path: must be absolute, got ${JSON.stringify(path.slice(0, 200))}`);
  return path;
}

function integerParam(value: string | undefined, name: string, min: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^-?[0-9]{1,16}$/.test(value)) throw invalid(`${name}: must be an integer`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw invalid(`${name}: must be an integer of at least ${min}`);
  return n;
}

function notFound(path: string): GatewayError {
  return new GatewayError('file_not_found', `File not found: ${path}`, { path });
}

/**
 * A driver's NOT_FOUND from a file operation means either "no such file" or "no such sandbox":
 * ask the driver which.
 */
async function fileFailure(target: GatewayTarget, path: string, error: unknown): Promise<GatewayError> {
  if (error instanceof RuntimeError && error.kind === 'NOT_FOUND') {
    const state = await target.runtime.inspect(target.runtimeId).catch(() => undefined);
    if (!state?.running) return sandboxNotFound(target.sandboxId, `Sandbox ${target.sandboxId} is no longer running`);
    return notFound(path);
  }
  return runtimeFailure(target, error);
}

/** 408 `idle_timeout`: a transfer moved no byte for the idle timeout; the connection is closed after it. */
function idleTimeout(seconds: number): GatewayError {
  return new GatewayError('idle_timeout', `No data moved for ${seconds} seconds (CORRAL_TRANSFER_IDLE_TIMEOUT); the transfer was cut`);
}

/**
 * Streams a multipart upload's `file` part into the sandbox; resolves with the bytes written.
 * When `signal` aborts, the copy stops (its process is killed) and the promise rejects.
 */
function receiveUpload(request: FastifyRequest, target: GatewayTarget, path: string, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: request.raw.headers, limits: { files: 1, fields: 32, fieldSize: 64 * 1024, parts: 64 } });
    } catch (error) {
      reject(invalid(`Expected multipart/form-data with a "file" part: ${(error as Error).message}`));
      return;
    }
    let written: Promise<{ size: number }> | undefined;
    let content: PassThrough | undefined;
    let settled = false;
    const fail = (error: unknown): void => {
      if (settled) return;
      settled = true;
      // Read and drop the rest of the body so the client gets to see the answer.
      request.raw.unpipe(parser);
      request.raw.resume();
      reject(error);
    };
    parser.on('file', (name, stream) => {
      if (name !== 'file' || written) {
        stream.resume();
        return;
      }
      // A separate stream, so a failing copy cannot tear down the multipart parser.
      content = new PassThrough();
      stream.pipe(content);
      written = target.runtime.putFile(target.runtimeId, path, content);
      written.catch((error: unknown) => {
        stream.unpipe(content);
        stream.resume();
        fail(error);
      });
    });
    parser.on('error', (error: Error) => fail(invalid(`Malformed multipart body: ${error.message}`)));
    parser.on('close', () => {
      if (!written) {
        fail(invalid('The multipart body has no "file" part'));
        return;
      }
      written.then(({ size }) => {
        if (!settled) {
          settled = true;
          resolve(size);
        }
      }, fail);
    });
    request.raw.on('error', (error) => fail(error));
    signal.addEventListener(
      'abort',
      () => {
        const reason = signal.reason instanceof Error ? signal.reason : new Error('aborted');
        content?.destroy(reason);
        fail(reason);
      },
      { once: true },
    );
    request.raw.pipe(parser);
  });
}

/** `POST …/upload`, `GET …/download` and `GET …/read-file`. */
export function registerFileRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.post<FileRoute>('/:user_ns/:job_id/upload', { config: { public: true } }, async (request, reply) => {
    const target = targetOf(request);
    const path = pathParam(request.query, true);
    if (!request.headers['content-type']?.toLowerCase().startsWith('multipart/form-data')) {
      throw invalid('Expected a multipart/form-data body with a "file" part');
    }
    const signal = clientGone(request, reply);
    const done = ctx.access.keepActive(target.sandboxId);
    const idleSeconds = ctx.config.transferIdleTimeoutSeconds;
    const stalled = new AbortController();
    const cut = AbortSignal.any([signal, stalled.signal]);
    let unwatch = (): void => undefined;
    let startedAt = 0;
    try {
      const size = await ctx.slots.run(
        target,
        () => {
          startedAt = performance.now();
          unwatch = watchTransferIdle(request.raw.socket, idleSeconds * 1000, () => stalled.abort(idleTimeout(idleSeconds)));
          return receiveUpload(request, target, path, cut);
        },
        signal,
      );
      ctx.metrics.transferSeconds.observe({ direction: 'upload' }, (performance.now() - startedAt) / 1000);
      ctx.metrics.transferBytes.observe({ direction: 'upload' }, size);
      ctx.events.record(target.sandboxId, 'file.upload', { path, bytes: size, direction: 'upload' }, actorOf(target));
      return reply.send({ success: true, path, size, timestamp: new Date().toISOString() });
    } catch (error) {
      if (stalled.signal.aborted) {
        // The rest of the body will not come: answer and close the connection.
        reply.header('connection', 'close');
        throw stalled.signal.reason as GatewayError;
      }
      if (signal.aborted) return reply;
      throw await fileFailure(target, path, error);
    } finally {
      unwatch();
      done();
    }
  });

  app.get<FileRoute>('/:user_ns/:job_id/download', { config: { public: true } }, async (request, reply) => {
    const target = targetOf(request);
    const path = pathParam(request.query, false);
    const signal = clientGone(request, reply);
    const done = ctx.access.keepActive(target.sandboxId);
    const release = await ctx.slots.acquire(target, signal).catch((error: unknown) => {
      done();
      throw error;
    });
    const startedAt = performance.now();
    let file: { size: number; stream: Readable };
    try {
      file = await target.runtime.getFile(target.runtimeId, path);
    } catch (error) {
      release();
      done();
      throw await fileFailure(target, path, error);
    }
    // From the first byte on, a client that stops reading (or a sandbox that stops feeding) is cut:
    // its socket is closed. Not before: opening the file in a busy sandbox may take a while, and
    // cutting then would close the connection with no answer at all.
    const idleMs = ctx.config.transferIdleTimeoutSeconds * 1000;
    const unwatch = watchTransferIdle(request.raw.socket, idleMs, () => request.raw.socket?.destroy());
    let finishedOnce = false;
    const finished = (): void => {
      if (finishedOnce) return;
      finishedOnce = true;
      unwatch();
      release();
      done();
    };
    reply.raw.once('close', () => {
      finished();
      file.stream.destroy();
      // Counted once the whole answer went out.
      if (reply.raw.writableFinished) {
        ctx.metrics.transferSeconds.observe({ direction: 'download' }, (performance.now() - startedAt) / 1000);
        ctx.metrics.transferBytes.observe({ direction: 'download' }, file.size);
        ctx.events.record(target.sandboxId, 'file.download', { path, bytes: file.size, direction: 'download' }, actorOf(target));
      }
    });
    file.stream.once('close', finished);
    file.stream.once('end', finished);
    file.stream.once('error', finished);
    return sendStream(reply, file);
  });

  app.get<FileRoute>('/:user_ns/:job_id/read-file', { config: { public: true } }, async (request, reply) => {
    const target = targetOf(request);
    const path = pathParam(request.query, false);
    const offset = integerParam(request.query.offset, 'offset', Number.MIN_SAFE_INTEGER);
    const length = integerParam(request.query.length, 'length', 0);
    const signal = clientGone(request, reply);
    ctx.access.touch(target.sandboxId);
    const idleSeconds = ctx.config.transferIdleTimeoutSeconds;
    const stalled = new AbortController();
    let unwatch = (): void => undefined;
    let result: Awaited<ReturnType<typeof readWindow>>;
    let startedAt = 0;
    try {
      result = await ctx.slots.run(
        target,
        () => {
          startedAt = performance.now();
          // From here until the answer is taken by the client: a read (or a client) that moves
          // nothing for the idle timeout is cut.
          unwatch = watchTransferIdle(request.raw.socket, idleSeconds * 1000, () => {
            if (reply.sent) request.raw.socket?.destroy();
            else stalled.abort(idleTimeout(idleSeconds));
          });
          return readWindow(target.runtime, target.runtimeId, path, { offset, length, maxBytes: MAX_READ_BYTES }, AbortSignal.any([signal, stalled.signal]));
        },
        signal,
      );
    } catch (error) {
      unwatch();
      if (stalled.signal.aborted) throw stalled.signal.reason as GatewayError;
      if (signal.aborted) return reply;
      throw runtimeFailure(target, error);
    }
    reply.raw.once('close', unwatch);
    switch (result.kind) {
      case 'missing':
        throw notFound(path);
      case 'too-large':
        // Prime's shape: the message is the `error` (docs/errors.md, `read_file_too_large`).
        return reply.code(GATEWAY_ERRORS.read_file_too_large.status).send({
          error: `File size (${result.length} bytes) exceeds max read size (${MAX_READ_BYTES} bytes). Use /download instead.`,
          code: GATEWAY_ERRORS.read_file_too_large.status,
          total_size: result.totalSize,
        });
      case 'failed':
        throw new GatewayError('gateway_error', result.message);
      case 'ok':
        ctx.metrics.transferSeconds.observe({ direction: 'read' }, (performance.now() - startedAt) / 1000);
        ctx.metrics.transferBytes.observe({ direction: 'read' }, result.content.length);
        ctx.events.record(target.sandboxId, 'file.read', { path, bytes: result.content.length, offset: result.offset, direction: 'read' }, actorOf(target));
        return reply.send({
          content: result.content.toString('utf8'),
          size: result.content.length,
          total_size: result.totalSize,
          offset: result.offset,
          truncated: result.offset > 0 || result.offset + result.content.length < result.totalSize,
        });
    }
  });
}

function sendStream(reply: FastifyReply, file: { size: number; stream: Readable }): FastifyReply {
  return reply.type('application/octet-stream').header('content-length', String(file.size)).send(file.stream);
}

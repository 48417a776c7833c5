/**
 * The parts of the Connect protocol (connectrpc.com/docs/protocol) the gateway speaks: errors
 * (their codes and HTTP statuses are in the registry, errors/error-codes.ts), envelopes (1 flag byte, 4-byte big-endian length, message),
 * end-stream messages and the `Connect-Timeout-Ms` header.
 */
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { type DescMessage, type MessageShape, fromBinary } from '@bufbuild/protobuf';
import { CONNECT_STATUS, type ConnectCode } from '../../errors/error-codes.js';

/** An RPC error with a Connect code. */
export class ConnectError extends Error {
  constructor(
    readonly code: ConnectCode,
    message: string,
  ) {
    super(message);
    this.name = 'ConnectError';
  }

  /** The HTTP status of a unary error response with this code. */
  get status(): number {
    return CONNECT_STATUS[this.code];
  }

  /** The JSON error object: the body of a unary error, the `error` of an end-stream message. */
  toJson(): { code: ConnectCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Envelope flag: the message is compressed with the stream's `Connect-Content-Encoding`. */
export const FLAG_COMPRESSED = 0x01;
/** Envelope flag: the end-stream message (JSON). */
export const FLAG_END_STREAM = 0x02;

/** Wraps one message in an envelope. */
export function envelope(message: Uint8Array, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** The end-stream envelope: `{}` on success, `{"error": {code, message}}` on failure. */
export function endStreamEnvelope(error?: ConnectError): Buffer {
  return envelope(Buffer.from(JSON.stringify(error ? { error: error.toJson() } : {}), 'utf8'), FLAG_END_STREAM);
}

/** One decoded envelope. */
export interface Envelope {
  flags: number;
  message: Buffer;
}

/** Splits a buffer into whole envelopes; throws `invalid_argument` on a truncated one. */
export function decodeEnvelopes(buf: Buffer): Envelope[] {
  const out: Envelope[] = [];
  let pos = 0;
  while (pos < buf.length) {
    if (pos + 5 > buf.length) throw new ConnectError('invalid_argument', 'Truncated envelope header');
    const flags = buf[pos] as number;
    const length = buf.readUInt32BE(pos + 1);
    if (pos + 5 + length > buf.length) throw new ConnectError('invalid_argument', 'Truncated envelope');
    out.push({ flags, message: buf.subarray(pos + 5, pos + 5 + length) });
    pos += 5 + length;
  }
  return out;
}

/** The largest message a request may carry once decompressed (the request body limit). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const gunzipAsync = promisify(gunzip);

/**
 * Undoes a request's compression (`identity` or `gzip`); anything else is `unimplemented`.
 * Decompression stops at `maxBytes` of output: a bigger message (a gzip bomb) is
 * `resource_exhausted` (HTTP 429 for a unary call), and never more than `maxBytes` is allocated.
 * It runs on libuv's thread pool, not the event loop: inflating a few KiB into 16 MiB takes tens
 * of milliseconds of CPU, which management calls would otherwise wait behind.
 */
export async function decompress(message: Buffer, encoding: string | undefined, maxBytes = MAX_MESSAGE_BYTES): Promise<Buffer> {
  const e = (encoding ?? 'identity').trim().toLowerCase();
  if (e === '' || e === 'identity') return message;
  if (e === 'gzip') {
    try {
      return await gunzipAsync(message, { maxOutputLength: maxBytes });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new ConnectError('resource_exhausted', `The gzip-compressed message expands to more than ${maxBytes} bytes`);
      }
      throw new ConnectError('invalid_argument', 'The gzip-compressed message does not decompress');
    }
  }
  throw new ConnectError('unimplemented', `Unsupported compression ${JSON.stringify(encoding)}; use identity or gzip`);
}

/**
 * The only message of a server-streaming request body (one envelope, not end-stream, possibly
 * compressed with `Connect-Content-Encoding`).
 */
export async function singleStreamMessage(body: Buffer, encoding: string | undefined): Promise<Buffer> {
  const envelopes = decodeEnvelopes(body);
  const first = envelopes[0];
  if (envelopes.length !== 1 || first === undefined || (first.flags & FLAG_END_STREAM) !== 0) {
    throw new ConnectError('invalid_argument', `A server-streaming request carries exactly one message; got ${envelopes.length} envelopes`);
  }
  return (first.flags & FLAG_COMPRESSED) !== 0 ? decompress(first.message, encoding) : first.message;
}

/** The deadline in milliseconds from `Connect-Timeout-Ms` (up to 10 digits), if given. */
export function parseTimeoutMs(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || !/^\d{1,10}$/.test(value.trim())) {
    throw new ConnectError('invalid_argument', 'Connect-Timeout-Ms must be a positive integer of at most 10 digits');
  }
  return Number(value.trim());
}

/**
 * Decodes a binary protobuf message with the generated `schema` (unknown fields are kept aside
 * and ignored); a message that does not decode — truncated, a wrong wire type, invalid UTF-8 in a
 * string — is `invalid_argument`.
 */
export function decodeMessage<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> {
  try {
    return fromBinary(schema, bytes);
  } catch (error) {
    throw new ConnectError('invalid_argument', `Malformed protobuf message: ${(error as Error).message}`);
  }
}

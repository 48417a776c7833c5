/**
 * A minimal Connect-RPC client for `command_session.CommandSession`, for tests: server-streaming
 * calls with `application/connect+proto` envelopes and unary calls with `application/proto`, as
 * Prime's Python SDK makes them.
 */
import { type DescMessage, type MessageInitShape, create, toBinary } from '@bufbuild/protobuf';
import type { ConnectCode } from '../../errors/error-codes.js';
import { FLAG_END_STREAM, envelope } from './connect-protocol.js';
import { type SessionEvent, decodeSessionEvent } from './session-events.js';

/** The binary encoding of a message built from `init` with the generated `schema`. */
export function encode<Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>): Buffer {
  return Buffer.from(toBinary(schema, create(schema, init)));
}

/** A Connect error as a client sees it. */
export interface ClientError {
  code: ConnectCode | string;
  message: string;
}

/** The outcome of a streaming call. */
export interface StreamResult {
  /** HTTP status of the response. */
  status: number;
  events: SessionEvent[];
  /** From the end-stream message; undefined on a clean end. */
  error?: ClientError;
  /** False when the body ended without an end-stream message. */
  ended: boolean;
}

/** The outcome of a unary call. */
export interface UnaryResult {
  status: number;
  /** The response message on success. */
  message?: Buffer;
  error?: ClientError;
}

/** Where to reach one sandbox's service, with which token. */
export interface ConnectTarget {
  /** `<gateway_url>/<user_ns>/<job_id>` */
  base: string;
  token: string | null;
}

function headers(target: ConnectTarget, contentType: string, timeoutMs?: number): Record<string, string> {
  return {
    'content-type': contentType,
    'connect-protocol-version': '1',
    ...(timeoutMs !== undefined ? { 'connect-timeout-ms': String(timeoutMs) } : {}),
    ...(target.token !== null ? { authorization: `Bearer ${target.token}` } : {}),
  };
}

/** A running streaming call: events as they arrive, and the final result. */
export class StreamCall {
  readonly events: SessionEvent[] = [];
  readonly result: Promise<StreamResult>;
  private readonly controller = new AbortController();
  private waiters: Array<() => void> = [];

  constructor(target: ConnectTarget, method: string, message: Buffer, timeoutMs?: number) {
    this.result = this.run(target, method, message, timeoutMs);
    this.result.catch(() => undefined);
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async run(target: ConnectTarget, method: string, message: Buffer, timeoutMs?: number): Promise<StreamResult> {
    try {
      const res = await fetch(`${target.base}/command_session.CommandSession/${method}`, {
        method: 'POST',
        headers: headers(target, 'application/connect+proto', timeoutMs),
        body: envelope(message),
        signal: this.controller.signal,
      });
      let pending = Buffer.alloc(0);
      let error: ClientError | undefined;
      let ended = false;
      if (!res.body) throw new Error('no body');
      for await (const chunk of res.body) {
        pending = Buffer.concat([pending, Buffer.from(chunk as Uint8Array)]);
        while (pending.length >= 5) {
          const length = pending.readUInt32BE(1);
          if (pending.length < 5 + length) break;
          const flags = pending[0] as number;
          const body = pending.subarray(5, 5 + length);
          pending = pending.subarray(5 + length);
          if (flags & FLAG_END_STREAM) {
            ended = true;
            const end = JSON.parse(body.toString('utf8')) as { error?: ClientError };
            error = end.error;
          } else {
            const event = decodeSessionEvent(body);
            if (event) this.events.push(event);
          }
          this.notify();
        }
      }
      return { status: res.status, events: this.events, ...(error ? { error } : {}), ended };
    } finally {
      this.notify();
    }
  }

  /** Text of every data event of `stream` so far. */
  text(stream: 'stdout' | 'stderr' | 'pty'): string {
    return Buffer.concat(this.events.flatMap((e) => (e.kind === 'data' && e.stream === stream ? [e.data] : []))).toString('utf8');
  }

  /** Resolves once `predicate` holds for the events (10 s at most). */
  async until(predicate: (call: StreamCall) => boolean, what = 'condition'): Promise<void> {
    const deadline = Date.now() + 10_000;
    let done = false;
    const mark = (): void => {
      done = true;
    };
    void this.result.then(mark, mark);
    while (!predicate(this)) {
      if (done) throw new Error(`stream ended before ${what}; events ${JSON.stringify(this.events)}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; events ${JSON.stringify(this.events)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  /** Drops the connection, as a client that goes away. */
  abort(): void {
    this.controller.abort();
  }
}

/** Sends one unary call. */
export async function unaryCall(target: ConnectTarget, method: string, message: Buffer, contentType = 'application/proto'): Promise<UnaryResult> {
  const res = await fetch(`${target.base}/command_session.CommandSession/${method}`, {
    method: 'POST',
    headers: headers(target, contentType),
    body: message,
  });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status === 200) return { status: res.status, message: body };
  return { status: res.status, error: JSON.parse(body.toString('utf8')) as ClientError };
}

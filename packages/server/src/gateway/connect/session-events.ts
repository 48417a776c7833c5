/**
 * The events a command session streams (`StartEvent{pid}`, output, `EndEvent`, `KeepAlive`), as
 * the session code handles them, and their `StartResponse` / `ConnectResponse` messages (the two
 * are the same on the wire), encoded by the code generated from `proto/command_session.proto`.
 */
import { type MessageInitShape, create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { StartResponseSchema } from './gen/command_session_pb.js';

/** `CommandSessionEvent.EndEvent`. */
export interface EndEvent {
  exitCode: number;
  exited: boolean;
  status: string;
  error?: string;
}

/** One event of a session: exactly one of start, data, end, keepalive. */
export type SessionEvent =
  | { kind: 'start'; pid: number }
  | { kind: 'data'; stream: 'stdout' | 'stderr' | 'pty'; data: Buffer }
  | ({ kind: 'end' } & EndEvent)
  | { kind: 'keepalive' };

type StartResponseInit = MessageInitShape<typeof StartResponseSchema>;

function responseInit(event: SessionEvent): StartResponseInit {
  switch (event.kind) {
    case 'start':
      return { event: { event: { case: 'start', value: { pid: event.pid } } } };
    case 'data':
      return { event: { event: { case: 'data', value: { output: { case: event.stream, value: event.data } } } } };
    case 'end': {
      const { exitCode, exited, status, error } = event;
      return { event: { event: { case: 'end', value: { exitCode, exited, status, ...(error !== undefined ? { error } : {}) } } } };
    }
    case 'keepalive':
      return { event: { event: { case: 'keepalive', value: {} } } };
  }
}

/** The `StartResponse` (or `ConnectResponse`) message carrying `event`. */
export function encodeSessionEvent(event: SessionEvent): Uint8Array {
  return toBinary(StartResponseSchema, create(StartResponseSchema, responseInit(event)));
}

/**
 * The event of a `StartResponse` / `ConnectResponse` message (for clients: tests and tools);
 * undefined when it carries none. A `DataEvent` without output reads as empty stdout.
 */
export function decodeSessionEvent(message: Uint8Array): SessionEvent | undefined {
  const event = fromBinary(StartResponseSchema, message).event?.event;
  switch (event?.case) {
    case undefined:
      return undefined;
    case 'start':
      return { kind: 'start', pid: event.value.pid };
    case 'data': {
      const output = event.value.output;
      return output.case === undefined ? { kind: 'data', stream: 'stdout', data: Buffer.alloc(0) } : { kind: 'data', stream: output.case, data: Buffer.from(output.value) };
    }
    case 'end': {
      const { exitCode, exited, status, error } = event.value;
      return { kind: 'end', exitCode, exited, status, ...(error !== undefined ? { error } : {}) };
    }
    case 'keepalive':
      return { kind: 'keepalive' };
  }
}

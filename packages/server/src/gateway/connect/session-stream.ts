import type { ServerResponse } from 'node:http';
import { type SessionEvent, encodeSessionEvent } from './session-events.js';
import type { CommandSession, SessionListener, SessionOutcome } from './command-sessions.js';
import { ConnectError, endStreamEnvelope, envelope } from './connect-protocol.js';

/** How often an idle stream carries a `KeepAlive` event. */
export const KEEPALIVE_INTERVAL_MS = 15_000;
/** The longest delay `setTimeout` honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A server-streaming Connect response (`application/connect+proto`) on a hijacked reply:
 * enveloped `StartResponse` messages, then one end-stream message.
 */
export class EventStream {
  private finished = false;
  private readonly keepalive: NodeJS.Timeout;

  constructor(readonly res: ServerResponse) {
    res.writeHead(200, { 'content-type': 'application/connect+proto', 'cache-control': 'no-store' });
    res.flushHeaders();
    this.keepalive = setInterval(() => this.send({ kind: 'keepalive' }), KEEPALIVE_INTERVAL_MS);
    this.keepalive.unref();
  }

  /** True once the end-stream message was written or the client went away. */
  get ended(): boolean {
    return this.finished || this.res.destroyed;
  }

  /** Writes one event; false when the socket is congested (wait for `drain`). */
  send(event: SessionEvent): boolean {
    if (this.ended) return true;
    return this.res.write(envelope(encodeSessionEvent(event)));
  }

  /** Writes the end-stream message (with `error` on failure) and ends the response. */
  end(error?: ConnectError): void {
    clearInterval(this.keepalive);
    if (this.ended) return;
    this.finished = true;
    this.res.end(endStreamEnvelope(error));
  }
}

/** What ended a stream attached to a session. */
/** A Connect deadline: the client's `Connect-Timeout-Ms` and when it passes (`performance.now()` time). */
export interface Deadline {
  ms: number;
  at: number;
}

type StreamStop = { why: 'outcome'; outcome: SessionOutcome } | { why: 'deadline' } | { why: 'closed' };

/**
 * Streams a session's events to `stream` until the process ends, the deadline passes or the
 * client goes away: `StartEvent{pid}` first, then output, then `EndEvent` and a clean
 * end-stream. At the deadline (counted from the request's arrival) the stream ends with
 * `deadline_exceeded`, and then, when `killOnDeadline`, the process tree is killed. A client that goes away detaches; when no stream is left
 * attached the process tree is killed with SIGKILL.
 */
export async function pumpSession(
  session: CommandSession,
  stream: EventStream,
  options: { deadline: Deadline | undefined; killOnDeadline: boolean; failure: (error: unknown) => ConnectError },
): Promise<void> {
  const listener: SessionListener = { send: (event) => stream.send(event) };
  const onDrain = (): void => session.drained(listener);
  stream.res.on('drain', onDrain);
  // No await between the caller's start of the process and here: no output is missed.
  stream.send({ kind: 'start', pid: session.pid });
  session.attach(listener);

  let deadlineTimer: NodeJS.Timeout | undefined;
  let onClose: (() => void) | undefined;
  const stopped = new Promise<StreamStop>((resolve) => {
    // Timers cannot wait longer than 2^31-1 ms (~24.8 days); a longer deadline is no deadline.
    const deadline = options.deadline;
    if (deadline !== undefined && deadline.ms <= MAX_TIMER_MS) {
      deadlineTimer = setTimeout(() => resolve({ why: 'deadline' }), Math.max(0, deadline.at - performance.now()));
    }
    onClose = () => {
      if (!stream.ended || stream.res.destroyed) resolve({ why: 'closed' });
    };
    stream.res.once('close', onClose);
  });
  const first = await Promise.race([session.outcome.then((outcome): StreamStop => ({ why: 'outcome', outcome })), stopped]);
  clearTimeout(deadlineTimer);
  try {
    switch (first.why) {
      case 'outcome':
        if (first.outcome.ok) {
          stream.send({ kind: 'end', ...first.outcome.end });
          stream.end();
        } else {
          stream.end(options.failure(first.outcome.error));
        }
        return;
      case 'deadline':
        // The client hears at its deadline; killing the tree (an exec of its own on some drivers,
        // seconds on a loaded host) follows.
        stream.end(new ConnectError('deadline_exceeded', `Deadline of ${options.deadline?.ms ?? 0} ms exceeded${options.killOnDeadline ? '; the process is killed' : ''}`));
        if (options.killOnDeadline) await session.kill('SIGKILL');
        return;
      case 'closed':
        return;
    }
  } finally {
    if (onClose) stream.res.off('close', onClose);
    stream.res.off('drain', onDrain);
    const left = session.detach(listener);
    if (left === 0 && !session.finished) await session.kill('SIGKILL');
  }
}

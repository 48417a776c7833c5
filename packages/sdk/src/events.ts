import type { GetSandboxEventsResponse, GetSandboxStatsResponse } from './generated/api.js';
import { type HttpTransport, connectionError, controlPlaneError, parseJson } from './http.js';

/**
 * One event of a sandbox's timeline (`GET /sandbox/{id}/events`, a Corral extension): `type` is
 * `sandbox.created`, `sandbox.status` (`data.from`, `data.to`, `data.reason`), `exec`
 * (`data.command` cut to 1 KiB, `data.exitCode`, `data.durationMs`), `file.upload` /
 * `file.download` / `file.read` (`data.path`, `data.bytes`), `exposure.created` /
 * `exposure.deleted`, `ssh.session_created` / `ssh.session_deleted`, `egress.policy_changed` or
 * `stream.opened`; `actor` is who did it (null for what the server did on its own).
 */
export type SandboxEvent = GetSandboxEventsResponse['events'][number];

/**
 * One sandbox's resource usage (`GET /sandbox/{id}/stats`, a Corral extension): CPU time used and
 * the `cpu_cores` limit, memory used and its limit, pids, disk used on its root filesystem (null
 * when unreadable, e.g. while PAUSED) and its size, network counters (null when unreadable).
 */
export type SandboxStats = GetSandboxStatsResponse;

/** `GET /sandbox/{id}/stats`. */
export function sandboxStats(http: HttpTransport, sandboxId: string): Promise<SandboxStats> {
  return http.call('GET', `/sandbox/${encodeURIComponent(sandboxId)}/stats`, { operation: 'GetSandboxStats' });
}

/** Options of `events`. */
export interface EventsOptions {
  /** Only events after this id (the last one seen). Default: from the first. */
  after?: string;
  /** At most this many (1..1000). Default: the server's (100). */
  limit?: number;
}

/** Options of `followEvents`. */
export interface FollowEventsOptions {
  /** Only events after this id. Default: from the first. */
  after?: string;
  /** Stops following. */
  signal?: AbortSignal;
}

/** One page of events. */
export async function eventsPage(http: HttpTransport, sandboxId: string, options: EventsOptions = {}): Promise<GetSandboxEventsResponse> {
  const query: Record<string, string | number> = {};
  if (options.after !== undefined) query.after = options.after;
  if (options.limit !== undefined) query.limit = options.limit;
  return http.call('GET', `/sandbox/${encodeURIComponent(sandboxId)}/events`, { query, operation: 'GetSandboxEvents' });
}

/**
 * The sandbox's events after `after`, then new ones as they happen (`?follow=true`, NDJSON),
 * until the sandbox has ended or `signal` aborts.
 */
export async function* followEvents(http: HttpTransport, sandboxId: string, options: FollowEventsOptions = {}): AsyncGenerator<SandboxEvent> {
  const url = http.url(`/sandbox/${encodeURIComponent(sandboxId)}/events`, { follow: 'true', ...(options.after !== undefined ? { after: options.after } : {}) });
  let response: Response;
  try {
    response = await http.options.fetch(url, { method: 'GET', headers: { ...http.headers(false), accept: 'application/x-ndjson' }, ...(options.signal ? { signal: options.signal } : {}) });
  } catch (error) {
    if (options.signal?.aborted) return;
    throw connectionError(http.options.apiUrl, error, `GET /sandbox/${sandboxId}/events`);
  }
  if (!response.ok || !response.body) {
    const text = await response.text();
    throw controlPlaneError(response.status, parseJson(text), text, undefined);
  }
  const decoder = new TextDecoder();
  let pending = '';
  try {
    for await (const chunk of response.body) {
      pending += decoder.decode(chunk as Uint8Array, { stream: true });
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line) yield JSON.parse(line) as SandboxEvent;
        newline = pending.indexOf('\n');
      }
    }
  } catch (error) {
    if (options.signal?.aborted) return;
    throw error;
  }
}

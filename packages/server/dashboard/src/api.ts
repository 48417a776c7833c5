/**
 * The dashboard's API client: every call sends the API key kept in sessionStorage as a Bearer
 * token, and every non-2xx answer becomes an `ApiCallError` with the server's message.
 */

const KEY_STORAGE = 'corral.apiKey';

/** Dispatched on `window` when the API stops accepting the signed-in key. */
export const SIGNED_OUT_EVENT = 'corral:signed-out';

/** The signed-in API key, or null. */
export function apiKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}

/** Keeps the key for this tab's session (sessionStorage: gone when the tab closes). */
export function setApiKey(key: string | null): void {
  if (key === null) sessionStorage.removeItem(KEY_STORAGE);
  else sessionStorage.setItem(KEY_STORAGE, key);
}

/** A failed API call: HTTP status and the server's message. */
export class ApiCallError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function messageOf(status: number, body: unknown): string {
  if (typeof body === 'object' && body !== null) {
    const b = body as Record<string, unknown>;
    for (const field of ['detail', 'message', 'error']) {
      const value = b[field];
      if (typeof value === 'string') return value;
    }
  }
  return `HTTP ${status}`;
}

function headers(json: boolean): Headers {
  const result = new Headers({ accept: 'application/json' });
  const key = apiKey();
  if (key !== null) result.set('authorization', `Bearer ${key}`);
  if (json) result.set('content-type', 'application/json');
  return result;
}

/** Calls `/api/v1{path}` and returns the parsed JSON body. */
export async function api<T>(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers: headers(body !== undefined),
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    cache: 'no-store',
  });
  const text = await response.text();
  let parsed: unknown = undefined;
  if (text !== '') {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
  }
  if (!response.ok) {
    // A key revoked (or deleted) while signed in: forget it; main.ts shows the sign-in page.
    if (response.status === 401 && apiKey() !== null && path !== '/me') {
      setApiKey(null);
      window.dispatchEvent(new CustomEvent(SIGNED_OUT_EVENT));
    }
    throw new ApiCallError(response.status, messageOf(response.status, parsed));
  }
  return parsed as T;
}

/**
 * Reads an NDJSON stream (`?follow=true`) line by line until it ends or `signal` aborts. Each
 * line is parsed and handed to `onItem`.
 */
export async function followNdjson(path: string, signal: AbortSignal, onItem: (item: unknown) => void): Promise<void> {
  const response = await fetch(`/api/v1${path}`, { headers: headers(false), signal, cache: 'no-store' });
  if (!response.ok || response.body === null) {
    const text = await response.text().catch(() => '');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    throw new ApiCallError(response.status, messageOf(response.status, parsed));
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    let newline = buffered.indexOf('\n');
    while (newline >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line !== '') onItem(JSON.parse(line));
      newline = buffered.indexOf('\n');
    }
  }
}

/** A sandbox as the API returns it (the fields the dashboard shows). */
export interface Sandbox {
  id: string;
  name: string;
  dockerImage: string;
  startCommand: string | null;
  cpuCores: number;
  memoryGB: number;
  diskSizeGB: number;
  status: string;
  timeoutMinutes: number;
  idleTimeoutMinutes: number | null;
  terminationReason: string | null;
  labels: string[];
  createdAt: string;
  startedAt: string | null;
  terminatedAt: string | null;
  errorType: string | null;
  errorMessage: string | null;
  userId: string | null;
  teamId: string | null;
  networkAccess: boolean;
}

/** `GET /me`. */
export interface Me {
  user: { id: string; name: string; is_admin: boolean };
  teams: Array<{ id: string; name: string; role?: string | null }>;
}

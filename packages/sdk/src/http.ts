import { RESPONSE_SCHEMAS } from './generated/api.js';
import {
  ConflictError,
  ConnectionError,
  CorralError,
  ForbiddenError,
  NotFoundError,
  NotImplementedError,
  QuotaExceededError,
  RateLimitError,
  ResponseValidationError,
  TimeoutError,
  UnauthorizedError,
  ValidationError,
  type FieldProblem,
} from './errors.js';
import type { ResolvedOptions } from './options.js';
import { backoffDelay, retryAfterSeconds, sleep } from './retry.js';
import { validateSchema } from './validate.js';

/** Query values: repeated keys for arrays (`labels=a&labels=b`). */
export type QueryValue = string | number | boolean | string[] | undefined | null;

/** One control-plane call. */
export interface CallOptions {
  query?: Record<string, QueryValue> | undefined;
  body?: unknown;
  /** Safe to retry after the request may have reached the server (GET/PUT/DELETE, create with an idempotency key, auth, batch reads). */
  idempotent?: boolean;
  /** Name of the operation whose response schema the answer is checked against. */
  operation?: string;
  signal?: AbortSignal | undefined;
  timeoutMs?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

const PRE_SEND_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** The innermost `code` of a fetch failure (`ECONNREFUSED`, …). */
export function errorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Whether a fetch failure happened before anything was sent (so any request may be retried). */
export function failedBeforeSend(error: unknown): boolean {
  const code = errorCode(error);
  return code !== undefined && PRE_SEND_CODES.has(code);
}

function reasonOf(error: unknown): string {
  const code = errorCode(error);
  let current: unknown = error;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  const message = current instanceof Error ? current.message : String(error);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}

/** The error for a server that did not answer. */
export function connectionError(apiUrl: string, error: unknown, request?: string): ConnectionError {
  return new ConnectionError(
    `${request ? `${request}: ` : ''}Cannot reach Corral at ${apiUrl} (${reasonOf(error)}). Is the server running (\`corral serve\`)? Check the URL (apiUrl option, --api-url or CORRAL_API_URL).`,
    { cause: error },
  );
}

/** Parses a JSON body leniently: undefined for empty or non-JSON text. */
export function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The typed error for a control-plane error answer (`{detail, code, errors?}`). */
export function controlPlaneError(status: number, body: unknown, text: string, retryAfter: number | undefined): CorralError {
  const record = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const detail = typeof record.detail === 'string' ? record.detail : typeof record.message === 'string' ? record.message : text.slice(0, 300) || `HTTP ${status}`;
  const code = typeof record.code === 'string' ? record.code : undefined;
  const opts = { status, code };
  switch (status) {
    case 401:
      return new UnauthorizedError(`${detail}. Check the API key (apiKey option, --api-key, CORRAL_API_KEY or PRIME_API_KEY); an admin can create one with \`corral keys create\`.`, opts);
    case 403:
      if (code === 'QUOTA_EXCEEDED') {
        return new QuotaExceededError(
          `${detail}. Sandboxes count until they end (\`corral sandbox list\`, \`corral sandbox delete <id>\`); ` +
            'see the limits and usage with `corral users quota <user-id>` or `corral teams quota <team-id>` (client.users.quota(), client.teams.quota()).',
          opts,
        );
      }
      return new ForbiddenError(`${detail}. Use a key whose user may do this (an admin, or an admin of the team).`, opts);
    case 404:
      return new NotFoundError(
        code === 'SANDBOX_NOT_FOUND' ? `${detail}. Check the id (\`corral sandbox list\`) and that your key belongs to its owner.` : `${detail}.`,
        opts,
      );
    case 409:
      return new ConflictError(`${detail}.`, opts);
    case 400:
    case 422: {
      const fields = Array.isArray(record.errors)
        ? (record.errors as unknown[]).filter((e): e is FieldProblem => typeof e === 'object' && e !== null && typeof (e as FieldProblem).param === 'string')
        : [];
      return new ValidationError(`${detail}${fields.length > 0 ? '' : '.'} Fix the request and try again.`, fields, opts);
    }
    case 429:
      return new RateLimitError(
        `${detail}. Rate limited${retryAfter !== undefined ? `: retry after ${retryAfter}s` : ''}; the client already retried as configured (rateLimitRetry). Slow down or raise the server's limits.`,
        retryAfter,
        { code },
      );
    case 501:
      return new NotImplementedError(`${detail}. This Corral server does not serve it yet.`, opts);
    default:
      return new CorralError(`HTTP ${status}: ${detail}`, opts);
  }
}

/** Control-plane transport: auth header, timeouts, retries (§3.10), error mapping and response checks. */
export class HttpTransport {
  constructor(readonly options: ResolvedOptions) {}

  /** Builds `/api/v1…` URLs. */
  url(path: string, query?: Record<string, QueryValue>): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value === undefined || value === null) continue;
      if (Array.isArray(value)) for (const v of value) params.append(key, v);
      else params.append(key, String(value));
    }
    const qs = params.toString();
    return `${this.options.apiUrl}${path.startsWith('/api/') || path === '/healthz' ? '' : '/api/v1'}${path}${qs ? `?${qs}` : ''}`;
  }

  /** Headers every control-plane call sends. */
  headers(json: boolean): Record<string, string> {
    const headers: Record<string, string> = { 'user-agent': this.options.userAgent, accept: 'application/json' };
    if (this.options.apiKey) headers.authorization = `Bearer ${this.options.apiKey}`;
    if (json) headers['content-type'] = 'application/json';
    return headers;
  }

  /** Sends one call, retrying as the protocol allows, and returns the checked JSON answer. */
  async call<T>(method: string, path: string, options: CallOptions = {}): Promise<T> {
    const url = this.url(path, options.query);
    const hasBody = options.body !== undefined;
    const body = hasBody ? JSON.stringify(options.body) : undefined;
    const idempotent = options.idempotent ?? ['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'].includes(method);
    let transientAttempts = 0;
    let rateLimitAttempts = 0;
    for (;;) {
      const timeout = AbortSignal.timeout(options.timeoutMs ?? this.options.timeoutMs);
      const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
      let response: Response;
      let text: string;
      try {
        response = await this.options.fetch(url, { method, headers: { ...this.headers(hasBody), ...options.headers }, ...(body !== undefined ? { body } : {}), signal });
        text = await response.text();
      } catch (error) {
        if (options.signal?.aborted) throw options.signal.reason;
        if (timeout.aborted) {
          if (idempotent && transientAttempts < this.options.retry.maxRetries) {
            await sleep(backoffDelay(this.options.retry, transientAttempts++), options.signal);
            continue;
          }
          throw new TimeoutError(`${method} ${path} got no answer within ${options.timeoutMs ?? this.options.timeoutMs} ms. The server may be overloaded; retry, or raise timeoutMs.`, { cause: error });
        }
        if ((idempotent || failedBeforeSend(error)) && transientAttempts < this.options.retry.maxRetries) {
          await sleep(backoffDelay(this.options.retry, transientAttempts++), options.signal);
          continue;
        }
        throw connectionError(this.options.apiUrl, error, `${method} ${path}`);
      }
      if (response.status === 429 && rateLimitAttempts < this.options.rateLimitRetry.maxRetries) {
        const after = retryAfterSeconds(response.headers.get('retry-after'));
        await sleep(backoffDelay(this.options.rateLimitRetry, rateLimitAttempts++, (after ?? 0) * 1000), options.signal);
        continue;
      }
      if ([502, 503, 504].includes(response.status) && idempotent && transientAttempts < this.options.retry.maxRetries) {
        await sleep(backoffDelay(this.options.retry, transientAttempts++), options.signal);
        continue;
      }
      const parsed = parseJson(text);
      if (!response.ok) throw controlPlaneError(response.status, parsed, text, retryAfterSeconds(response.headers.get('retry-after')));
      if (typeof parsed !== 'object' || parsed === null) {
        throw new ResponseValidationError(`${method} ${path} answered HTTP ${response.status} without a JSON object. Is ${this.options.apiUrl} a Corral server?`, {
          status: response.status,
        });
      }
      const schema = options.operation ? RESPONSE_SCHEMAS[options.operation] : undefined;
      if (schema) {
        const problems = validateSchema(schema, parsed);
        if (problems.length > 0) {
          throw new ResponseValidationError(
            `${method} ${path} answered with an unexpected shape (${problems.join('; ')}). Is the server a compatible Corral version?`,
            { status: response.status },
          );
        }
      }
      return parsed as T;
    }
  }
}

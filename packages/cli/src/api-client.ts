import { readConfigFile } from './cli-config.js';

/** Where the CLI talks to and with which key. */
export interface ApiTarget {
  baseUrl: string;
  apiKey: string | undefined;
}

/** An error from the API, carrying the status and the server's `detail`. */
export class CliApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'CliApiError';
  }
}

/**
 * Resolves the API target from flags, then `CORRAL_*`, then the Prime SDK's variables, then the
 * file `corral login` writes, then `http://127.0.0.1:8080`.
 */
export function resolveTarget(options: { apiUrl?: string; apiKey?: string }, env: NodeJS.ProcessEnv = process.env): ApiTarget {
  const set = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  const file = readConfigFile(env);
  const raw = set(options.apiUrl) ?? set(env.CORRAL_API_URL) ?? set(env.PRIME_API_BASE_URL) ?? set(env.PRIME_BASE_URL) ?? set(file.api_url) ?? 'http://127.0.0.1:8080';
  return {
    baseUrl: raw.replace(/\/+$/, '').replace(/\/api\/v1$/, ''),
    apiKey: set(options.apiKey) ?? set(env.CORRAL_API_KEY) ?? set(env.PRIME_API_KEY) ?? set(file.api_key),
  };
}

/** Calls the API and returns the parsed JSON body; throws `CliApiError` with advice on failure. */
export async function callApi<T>(target: ApiTarget, method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(`${target.baseUrl}/api/v1${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (error) {
    const reason = error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
    throw new CliApiError(0, `Cannot reach Corral at ${target.baseUrl} (${reason}). Is \`corral serve\` running? Set --api-url or CORRAL_API_URL.`);
  }
  const text = await response.text();
  let parsed: unknown = undefined;
  try {
    parsed = text === '' ? {} : JSON.parse(text);
  } catch {
    throw new CliApiError(response.status, `Unexpected non-JSON response (HTTP ${response.status}) from ${target.baseUrl}`);
  }
  if (!response.ok) {
    const detail = (parsed as { detail?: unknown }).detail;
    const message = typeof detail === 'string' ? detail : text;
    if (response.status === 401) {
      throw new CliApiError(401, `${message}. Check --api-key or CORRAL_API_KEY.`);
    }
    throw new CliApiError(response.status, `HTTP ${response.status}: ${message}`);
  }
  return parsed as T;
}

import { ApiException } from '@kubernetes/client-node';

/** Whether `error` is the API server's answer with HTTP status `code`. */
export function isApiStatus(error: unknown, code: number): boolean {
  return error instanceof ApiException && error.code === code;
}

/** The API server's own message for a failed call (its Status `message`), else the error's text. */
export function apiErrorText(error: unknown): string {
  if (error instanceof ApiException) {
    const body = error.body as unknown;
    if (typeof body === 'string') {
      try {
        return (JSON.parse(body) as { message?: string }).message ?? body;
      } catch {
        return body;
      }
    }
    if (body && typeof body === 'object' && 'message' in body) return String((body as { message: unknown }).message);
    return `HTTP ${error.code}`;
  }
  return error instanceof Error ? error.message : String(error);
}

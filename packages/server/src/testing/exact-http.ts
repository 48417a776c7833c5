import { request as httpRequest } from 'node:http';

/** An HTTP answer read whole. */
export interface HttpAnswer {
  status: number;
  body: string;
  json<T>(): T;
}

/**
 * Sends a request with exactly these headers (node adds none but Host when absent): what tests
 * that replay another client's wire bytes use instead of `fetch`, which adds its own.
 */
export function sendExact(url: string, method: string, headers: Record<string, string>, body?: Buffer): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text, json: <T>() => JSON.parse(text) as T });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

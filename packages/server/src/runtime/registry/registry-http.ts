import { request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { guardedLookup, isListedRegistry, isPublicAddress } from './registry-address-policy.js';

/** A request the address policy refused before anything was sent. */
export class RegistryPolicyError extends Error {}

/** Options for {@link registryFetch}. */
export interface RegistryFetchOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** Whole request, body included. */
  timeoutMs: number;
  /** Hosts (`host[:port]`) the operator allows over plain HTTP and at non-public addresses. */
  insecureRegistries: readonly string[];
  /** Redirects followed (default 5); each hop is checked like the first. */
  maxRedirects?: number;
}

/** A response whose body the caller must read or destroy. */
export interface RegistryResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
  /** Where the response came from, after redirects. */
  url: URL;
}

/**
 * One HTTP request for the registry client, under the pull policy: HTTPS only, and public
 * addresses only (checked on the resolved address the connection uses), unless the host is one
 * the operator listed as insecure. Redirects are followed by hand so each hop is checked, and the
 * `authorization` header is dropped when a redirect leaves the origin.
 */
export async function registryFetch(start: URL, options: RegistryFetchOptions): Promise<RegistryResponse> {
  const signal = AbortSignal.timeout(options.timeoutMs);
  let url = start;
  let headers = { ...(options.headers ?? {}) };
  for (let hop = 0; ; hop++) {
    const response = await requestOnce(url, options.method ?? 'GET', headers, options.insecureRegistries, signal);
    const location = response.headers.location;
    if (response.status >= 300 && response.status < 400 && location !== undefined) {
      response.body.resume();
      if (hop >= (options.maxRedirects ?? 5)) throw new Error(`too many redirects from ${start.host}`);
      const next = new URL(location, url);
      if (next.origin !== url.origin) {
        const { authorization: _dropped, ...rest } = headers;
        headers = rest;
      }
      url = next;
      continue;
    }
    return response;
  }
}

function requestOnce(url: URL, method: string, headers: Record<string, string>, insecure: readonly string[], signal: AbortSignal): Promise<RegistryResponse> {
  const listed = isListedRegistry(url.host, insecure);
  if (url.protocol === 'http:') {
    if (!listed) return Promise.reject(new RegistryPolicyError(`${url.host} is not reached over plain HTTP (only registries in CORRAL_REGISTRY_INSECURE are)`));
  } else if (url.protocol !== 'https:') {
    return Promise.reject(new RegistryPolicyError(`unsupported URL scheme ${url.protocol}`));
  }
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (!listed && isIP(hostname) !== 0 && !isPublicAddress(hostname)) {
    return Promise.reject(new RegistryPolicyError(`${url.host} is a loopback, private or link-local address (allow it with CORRAL_REGISTRY_INSECURE)`));
  }
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { method, headers, signal, lookup: guardedLookup(listed) }, (res) => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url });
    });
    req.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENONPUBLIC') reject(new RegistryPolicyError(`${error.message} (allow it with CORRAL_REGISTRY_INSECURE)`));
      else reject(error);
    });
    req.end();
  });
}

/** Reads a whole body, refusing one longer than `limit` bytes (declared or actual). */
export async function readLimited(response: RegistryResponse, limit: number, what: string): Promise<Buffer> {
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    response.body.destroy();
    throw new Error(`${what} is larger than ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      response.body.destroy();
      throw new Error(`${what} is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

import { promises as dns } from 'node:dns';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { guardedLookup, isPublicAddress } from '../runtime/registry/registry-address-policy.js';

/** Why a webhook URL is refused (the message names the rule), or null when it may be used. */
export async function webhookUrlProblem(raw: string, allowPrivate: boolean): Promise<string | null> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be http or https';
  if (url.username !== '' || url.password !== '') return 'must not carry a user name or password';
  if (allowPrivate) return null;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  if (isIP(host) !== 0) {
    addresses = [host];
  } else {
    try {
      addresses = (await dns.lookup(host, { all: true })).map((a) => a.address);
    } catch {
      return `host ${host} does not resolve`;
    }
  }
  const blocked = addresses.find((a) => !isPublicAddress(a));
  return blocked === undefined ? null : `${host} is a loopback, private, link-local or metadata address (${blocked}); the operator may allow them with CORRAL_WEBHOOK_ALLOW_PRIVATE`;
}

/** What a webhook POST got: the receiver's status code. */
export interface WebhookPostResult {
  statusCode: number;
}

/**
 * POSTs `body` to `url` with `headers`, following no redirect, within `timeoutMs` (connect to the
 * end of the answer, whose body is read and discarded). Unless `allowPrivate`, the connection goes
 * only to a public address: an address literal is checked here, and a name is resolved by a lookup
 * that keeps only public addresses, so the address connected to is the one checked (no DNS rebinding
 * between a check and the connect).
 */
export function postWebhook(url: string, headers: Record<string, string>, body: string, options: { allowPrivate: boolean; timeoutMs: number }): Promise<WebhookPostResult> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const host = target.hostname.replace(/^\[|\]$/g, '');
    if (!options.allowPrivate && isIP(host) !== 0 && !isPublicAddress(host)) {
      reject(new Error(`${host} is a loopback, private, link-local or metadata address`));
      return;
    }
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const signal = AbortSignal.timeout(options.timeoutMs);
    const req = send(
      target,
      {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': 'corral-webhooks/1' },
        lookup: guardedLookup(options.allowPrivate),
        signal,
      },
      (res) => {
        res.on('data', () => undefined);
        res.once('end', () => resolve({ statusCode: res.statusCode ?? 0 }));
        res.once('error', reject);
      },
    );
    req.once('error', (error) => reject(signal.aborted ? new Error(`no answer within ${options.timeoutMs} ms`) : error));
    req.end(body);
  });
}

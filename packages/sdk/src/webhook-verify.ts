import { createHmac, timingSafeEqual } from 'node:crypto';

/** The default window, in seconds, a delivery's timestamp may differ from now (as Svix and Stripe allow). */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

/** A delivery's headers: a `Headers`, or a plain object as Node's `IncomingMessage.headers` (names in any case). */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

/** Why {@link verifyWebhook} refused a delivery. */
export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((k) => k.toLowerCase() === name);
  const value = key === undefined ? undefined : record[key];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Checks a Corral webhook delivery and returns its parsed body: `corral-webhook-signature` must
 * hold a `v1=` signature (space-separated list) equal to the base64 HMAC-SHA256 of
 * `${corral-webhook-id}.${corral-webhook-timestamp}.${body}`, keyed with the secret's base64 key
 * (after `whsec_`), and the timestamp must be within `toleranceSeconds` of now (against replays).
 * Pass the body exactly as received (bytes or text, not re-serialized JSON). Throws
 * {@link WebhookVerificationError} otherwise. Receivers should also drop a `corral-webhook-id`
 * they have processed: retries repeat it.
 */
export function verifyWebhook(secret: string, headers: WebhookHeaders, body: string | Uint8Array, toleranceSeconds = WEBHOOK_TOLERANCE_SECONDS): unknown {
  const id = header(headers, 'corral-webhook-id');
  const timestamp = header(headers, 'corral-webhook-timestamp');
  const signatures = header(headers, 'corral-webhook-signature');
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError('missing corral-webhook-id, corral-webhook-timestamp or corral-webhook-signature');
  if (!/^\d{1,15}$/.test(timestamp)) throw new WebhookVerificationError('corral-webhook-timestamp is not Unix seconds');
  const age = Math.floor(Date.now() / 1000) - Number(timestamp);
  if (Math.abs(age) > toleranceSeconds) throw new WebhookVerificationError(`the timestamp is ${age} s from now, outside the ${toleranceSeconds} s tolerance`);
  const text = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${text}`).digest();
  const match = signatures.split(' ').some((entry) => {
    if (!entry.startsWith('v1=')) return false;
    const given = Buffer.from(entry.slice(3), 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!match) throw new WebhookVerificationError('no signature matches the body');
  return JSON.parse(text) as unknown;
}

import { createHmac, randomBytes } from 'node:crypto';

/** The prefix of a webhook signing secret; the rest is the key, base64 (as Svix and Standard Webhooks write it). */
export const WEBHOOK_SECRET_PREFIX = 'whsec_';

/** A new signing secret: `whsec_` and 32 random bytes, base64. */
export function newWebhookSecret(): string {
  return `${WEBHOOK_SECRET_PREFIX}${randomBytes(32).toString('base64')}`;
}

/**
 * The `corral-webhook-signature` value of a delivery: `v1=` and the base64 HMAC-SHA256, keyed with
 * the secret's decoded key, of `id.timestamp.body` (the delivery id, the Unix seconds sent as
 * `corral-webhook-timestamp`, and the exact body bytes), as Svix and Standard Webhooks sign.
 */
export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.startsWith(WEBHOOK_SECRET_PREFIX) ? secret.slice(WEBHOOK_SECRET_PREFIX.length) : secret, 'base64');
  return `v1=${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

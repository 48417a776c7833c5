import { randomBytes } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomString(length: number, alphabet: string): string {
  // Rejection sampling keeps every character equally likely.
  const limit = 256 - (256 % alphabet.length);
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit) out += alphabet[byte % alphabet.length];
      if (out.length === length) break;
    }
  }
  return out;
}

/** A 24-character lowercase alphanumeric id, the shape Prime's ids have. */
export function newId(): string {
  return randomString(24, ALPHABET);
}

/** Whether a string has the shape of an id from `newId`. */
export function isId(value: string): boolean {
  return /^[a-z0-9]{24}$/.test(value);
}

/** A random base62 secret of the given length (an API key's secret part, a token key). */
export function newSecret(length: number): string {
  return randomString(length, BASE62);
}

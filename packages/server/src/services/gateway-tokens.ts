import { createHmac, timingSafeEqual } from 'node:crypto';

/** What a gateway token grants: access to one sandbox's data plane until `exp`. */
export interface GatewayClaims {
  /** Sandbox id. */
  sid: string;
  /** User id of the caller the token was issued to. */
  uid: string;
  /** Id of the API key the token was issued through: the token dies with that key. */
  kid: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

const HEADER = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));

/** Issues and verifies HS256 JWTs scoped to one sandbox. */
export class GatewayTokens {
  constructor(
    private readonly secret: string,
    private readonly ttlSeconds: number,
  ) {}

  /**
   * A token for one sandbox, issued to a user through one of their API keys, with its expiry.
   * `exp` is whole seconds, rounded up, so a token lives at least the configured lifetime.
   */
  issue(sandboxId: string, userId: string, apiKeyId: string, now = Date.now()): { token: string; expiresAt: Date } {
    const exp = Math.ceil(now / 1000 + this.ttlSeconds);
    const payload = base64url(JSON.stringify({ sid: sandboxId, uid: userId, kid: apiKeyId, exp } satisfies GatewayClaims));
    const signature = createHmac('sha256', this.secret).update(`${HEADER}.${payload}`).digest('base64url');
    return { token: `${HEADER}.${payload}.${signature}`, expiresAt: new Date(exp * 1000) };
  }

  /**
   * The claims of a valid, unexpired token; undefined for anything else (tokens without `kid`,
   * issued before keys were recorded, included). Whether the key and the user's access still
   * stand is the caller's check (`AccessChecker`).
   */
  verify(token: string, now = Date.now()): GatewayClaims | undefined {
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== HEADER) return undefined;
    const [, payload, signature] = parts as [string, string, string];
    const expected = createHmac('sha256', this.secret).update(`${HEADER}.${payload}`).digest();
    const given = Buffer.from(signature, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let claims: unknown;
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    if (typeof claims !== 'object' || claims === null) return undefined;
    const { sid, uid, kid, exp } = claims as Record<string, unknown>;
    if (typeof sid !== 'string' || typeof uid !== 'string' || typeof kid !== 'string' || typeof exp !== 'number') return undefined;
    if (exp * 1000 <= now) return undefined;
    return { sid, uid, kid, exp };
  }
}

import { createHash } from 'node:crypto';
import { RuntimeError } from '../runtime.js';
import type { SandboxSpec } from '../runtime.js';
import { normalizeRegistryHost } from './image-ref.js';
import type { ImageRef } from './image-ref.js';
import { RegistryClient } from './registry-client.js';
import type { RegistryClientOptions, RegistryCredentials } from './registry-client.js';

/**
 * The credentials a pull of `ref` may use: those of the spec when they were made for the image's
 * registry (their `serverAddress`), none when the spec has none. Credentials for another registry
 * are refused (`IMAGE_PULL_FAILED`): they are never sent to a host they were not made for.
 */
export function credentialsFor(ref: ImageRef, auth: SandboxSpec['registryAuth']): RegistryCredentials | undefined {
  if (!auth) return undefined;
  const server = normalizeRegistryHost(auth.serverAddress);
  if (server !== ref.registry) {
    throw new RuntimeError('IMAGE_PULL_FAILED', `the registry credentials are for ${server}, not for ${ref.registry}; they are not sent there`);
  }
  return { username: auth.username, password: auth.password };
}

/** A stable key for a credential set (a hash; `anonymous` for none), for caches keyed by who asks. */
export function credentialKey(credentials: RegistryCredentials | undefined): string {
  if (!credentials) return 'anonymous';
  return createHash('sha256').update(`${credentials.username}\0${credentials.password}`).digest('hex');
}

/**
 * Checks with the registry that a caller may pull an image the host already holds (a HEAD of the
 * manifest with the caller's credentials, or none). A success is remembered for `ttlMs` (default
 * 60 s) per credential and image; a refusal is not, so fixed credentials work at once.
 */
export class RegistryAccessCheck {
  private readonly passed = new Map<string, number>();

  constructor(
    private readonly options: RegistryClientOptions,
    private readonly ttlMs = 60_000,
  ) {}

  /** Resolves when the registry lets `credentials` pull `ref`; otherwise `RuntimeError('IMAGE_PULL_FAILED')` with a short reason. */
  async check(ref: ImageRef, credentials: RegistryCredentials | undefined): Promise<void> {
    const key = `${credentialKey(credentials)}\0${ref.canonical}`;
    const now = Date.now();
    if ((this.passed.get(key) ?? 0) > now) return;
    try {
      await new RegistryClient(ref, credentials, this.options).checkAccess();
    } catch (error) {
      throw new RuntimeError('IMAGE_PULL_FAILED', `cannot use ${ref.canonical}: ${(error as Error).message}`, { cause: error });
    }
    if (this.passed.size > 10_000) for (const [k, until] of this.passed) if (until <= now) this.passed.delete(k);
    this.passed.set(key, now + this.ttlMs);
  }
}

import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { registryEndpoint } from './image-ref.js';
import type { ImageRef } from './image-ref.js';
import { isListedRegistry } from './registry-address-policy.js';
import { readLimited, registryFetch, RegistryPolicyError } from './registry-http.js';
import type { RegistryResponse } from './registry-http.js';

/** Media types of manifests the client accepts. */
export const MANIFEST_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

/** A content descriptor from a manifest. */
export interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: { architecture?: string; os?: string; variant?: string };
}

/** An image manifest (OCI or Docker schema 2). */
export interface ImageManifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

/** Credentials for a registry. */
export interface RegistryCredentials {
  username: string;
  password: string;
}

/** Options for {@link RegistryClient}. */
export interface RegistryClientOptions {
  /**
   * Registries (`host[:port]`, as in image references) the client may reach over plain HTTP and at
   * loopback, private or link-local addresses. Every other registry must be public HTTPS.
   */
  insecureRegistries?: readonly string[];
  /** Per-request timeout (default 30 s; blob downloads get 10 minutes). */
  timeoutMs?: number;
  /** Platform to select from an index (default linux/amd64). */
  platform?: { os: string; architecture: string; variant?: string };
}

/** Largest manifest, index or image config the client reads (4 MiB). */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;
/** Largest token service answer the client reads. */
const MAX_TOKEN_BYTES = 1024 * 1024;
/** Token services on another host than their registry that are known to belong to it. */
const KNOWN_TOKEN_HOSTS: Readonly<Record<string, readonly string[]>> = { 'registry-1.docker.io': ['auth.docker.io'] };

/**
 * A minimal OCI distribution client: manifests (with index/manifest-list platform selection) and
 * blobs, with anonymous access, Docker-Hub-style bearer tokens (`WWW-Authenticate: Bearer realm=…`)
 * and HTTP basic auth. Every blob and manifest fetched by digest is verified; manifests and configs
 * are read up to {@link MAX_JSON_BYTES}, blobs up to the size the caller allows. Requests follow
 * the address policy of {@link registryFetch}. Credentials go only to the registry's own host and
 * to a token service on that host (or one known to belong to it); errors carry a short reason,
 * never a response body.
 */
export class RegistryClient {
  private token: string | undefined;
  private basic = false;
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly platform: { os: string; architecture: string; variant?: string };
  private readonly insecure: readonly string[];

  constructor(
    private readonly ref: ImageRef,
    private readonly credentials: RegistryCredentials | undefined,
    options: RegistryClientOptions = {},
  ) {
    this.insecure = options.insecureRegistries ?? [];
    const plainHttp = isListedRegistry(ref.registry, this.insecure);
    this.base = `${plainHttp ? 'http' : 'https'}://${registryEndpoint(ref.registry)}/v2/${ref.repository}`;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  }

  /** Resolves the reference to a single-platform manifest; returns it with its digest. */
  async resolveManifest(): Promise<{ digest: string; manifest: ImageManifest }> {
    let reference = this.ref.digest ?? this.ref.tag;
    for (let depth = 0; depth < 3; depth++) {
      const { body, digest, mediaType } = await this.fetchManifest(reference);
      let parsed: { mediaType?: string; manifests?: Descriptor[]; layers?: Descriptor[]; config?: Descriptor; schemaVersion?: number };
      try {
        parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
      } catch {
        throw new Error('the manifest is not valid JSON');
      }
      const type = parsed.mediaType ?? mediaType;
      if (parsed.manifests !== undefined || type === MANIFEST_TYPES.ociIndex || type === MANIFEST_TYPES.dockerList) {
        const chosen = this.selectPlatform(Array.isArray(parsed.manifests) ? parsed.manifests : []);
        reference = chosen.digest;
        continue;
      }
      if (parsed.schemaVersion === 1) throw new Error('schema 1 manifests are not supported');
      if (!parsed.config || !Array.isArray(parsed.layers)) throw new Error(`unsupported manifest (media type ${type ?? 'unknown'})`);
      return { digest, manifest: { mediaType: type, config: parsed.config, layers: parsed.layers } };
    }
    throw new Error('manifest index nesting too deep');
  }

  /**
   * Asks the registry whether these credentials (or anonymous access) may pull the reference:
   * a HEAD of its manifest. Throws with a short reason when the registry says no.
   */
  async checkAccess(): Promise<void> {
    const response = await this.request(`${this.base}/manifests/${this.ref.digest ?? this.ref.tag}`, { accept: Object.values(MANIFEST_TYPES).join(', ') }, this.timeoutMs, 'HEAD');
    response.body.resume();
  }

  private selectPlatform(manifests: Descriptor[]): Descriptor {
    const { os, architecture, variant } = this.platform;
    const candidates = manifests.filter((m) => m.platform?.os === os && m.platform.architecture === architecture);
    const chosen = candidates.find((m) => variant === undefined || m.platform?.variant === variant) ?? candidates[0];
    if (!chosen) {
      const offered = manifests.slice(0, 8).map((m) => `${m.platform?.os ?? '?'}/${m.platform?.architecture ?? '?'}`).join(', ');
      throw new Error(`no ${os}/${architecture} image in the index (offers ${offered || 'nothing'})`);
    }
    return chosen;
  }

  private async fetchManifest(reference: string): Promise<{ body: Buffer; digest: string; mediaType: string | undefined }> {
    const response = await this.request(`${this.base}/manifests/${reference}`, {
      accept: Object.values(MANIFEST_TYPES).join(', '),
    });
    const body = await readLimited(response, MAX_JSON_BYTES, 'the manifest');
    const computed = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (reference.startsWith('sha256:') && computed !== reference) {
      throw new Error(`manifest digest mismatch: asked for ${reference}, got ${computed}`);
    }
    const contentType = response.headers['content-type'];
    const mediaType = contentType?.split(';')[0]?.trim();
    return { body, digest: computed, mediaType };
  }

  /** Fetches a small blob (an image config, at most {@link MAX_JSON_BYTES}) into memory and verifies its digest. */
  async fetchBlob(digest: string): Promise<Buffer> {
    const response = await this.request(`${this.base}/blobs/${digest}`, {});
    const body = await readLimited(response, MAX_JSON_BYTES, 'the image config');
    const computed = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (computed !== digest) throw new Error(`blob digest mismatch: expected ${digest}, got ${computed}`);
    return body;
  }

  /**
   * Streams a blob to `path` (via a temporary file), verifying its digest before the rename.
   * A blob longer than `maxBytes` is refused as soon as it passes that size.
   */
  async downloadBlob(digest: string, path: string, maxBytes = Number.MAX_SAFE_INTEGER): Promise<void> {
    const response = await this.request(`${this.base}/blobs/${digest}`, {}, 10 * 60_000);
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      response.body.destroy();
      throw new Error(`layer ${digest} is larger than ${maxBytes} bytes`);
    }
    const hash = createHash('sha256');
    let size = 0;
    const hasher = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        if (size > maxBytes) {
          callback(new Error(`layer ${digest} is larger than ${maxBytes} bytes`));
          return;
        }
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    const tmp = `${path}.part-${process.pid}-${Math.random().toString(36).slice(2)}`;
    try {
      await pipeline(response.body, hasher, createWriteStream(tmp));
      const computed = `sha256:${hash.digest('hex')}`;
      if (computed !== digest) throw new Error(`blob digest mismatch: expected ${digest}, got ${computed}`);
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** A request with authentication: retries once after a 401 with a bearer token or basic credentials. */
  private async request(url: string, headers: Record<string, string>, timeoutMs = this.timeoutMs, method: 'GET' | 'HEAD' = 'GET'): Promise<RegistryResponse> {
    const what = url.slice(this.base.length + 1).split('/')[0] ?? 'request';
    for (let attempt = 0; attempt < 2; attempt++) {
      const auth: Record<string, string> = {};
      if (this.token !== undefined) auth['authorization'] = `Bearer ${this.token}`;
      else if (this.basic && this.credentials) auth['authorization'] = `Basic ${basicValue(this.credentials)}`;
      let response: RegistryResponse;
      try {
        response = await registryFetch(new URL(url), { method, headers: { ...headers, ...auth }, timeoutMs, insecureRegistries: this.insecure });
      } catch (error) {
        throw new Error(`cannot reach registry ${this.ref.registry}: ${describeFetchError(error)}`, { cause: error });
      }
      if (response.status === 401 && attempt === 0) {
        response.body.resume();
        const challenge = response.headers['www-authenticate'];
        await this.authenticate((Array.isArray(challenge) ? challenge[0] : challenge) ?? '', new URL(url));
        continue;
      }
      if (response.status < 200 || response.status >= 300) {
        response.body.resume();
        const access = response.status === 401 || response.status === 403 ? (this.credentials ? ' (the credentials were refused)' : ' (the image may need credentials)') : '';
        throw new Error(`registry ${this.ref.registry} answered ${response.status} ${shortReason(response.status)} for the ${what}${access}`);
      }
      return response;
    }
    throw new Error(`registry ${this.ref.registry} refused the credentials (401)`);
  }

  private async authenticate(challenge: string, requested: URL): Promise<void> {
    const scheme = challenge.split(' ')[0]?.toLowerCase();
    if (scheme === 'basic') {
      if (!this.credentials) throw new Error(`registry ${this.ref.registry} requires credentials (basic auth) and none were given`);
      this.basic = true;
      return;
    }
    if (scheme !== 'bearer') throw new Error(`registry ${this.ref.registry} sent an unsupported auth challenge`);
    const params = parseChallenge(challenge.slice(challenge.indexOf(' ') + 1));
    const realm = params['realm'];
    if (!realm) throw new Error(`registry ${this.ref.registry}: bearer challenge without realm`);
    let tokenUrl: URL;
    try {
      tokenUrl = new URL(realm);
    } catch {
      throw new Error(`registry ${this.ref.registry}: bearer challenge with an invalid realm`);
    }
    const registryHost = requested.hostname.toLowerCase();
    const tokenHost = tokenUrl.hostname.toLowerCase();
    const sameService = tokenHost === registryHost || (KNOWN_TOKEN_HOSTS[registryHost] ?? []).includes(tokenHost);
    if (this.credentials && !sameService) {
      throw new Error(`registry ${this.ref.registry} sent its token service to another host (${tokenUrl.host}); credentials are only sent to ${this.ref.registry}`);
    }
    if (params['service']) tokenUrl.searchParams.set('service', params['service']);
    tokenUrl.searchParams.set('scope', params['scope'] ?? `repository:${this.ref.repository}:pull`);
    const headers: Record<string, string> = {};
    if (this.credentials) headers['authorization'] = `Basic ${basicValue(this.credentials)}`;
    let response: RegistryResponse;
    try {
      response = await registryFetch(tokenUrl, { headers, timeoutMs: this.timeoutMs, insecureRegistries: this.insecure });
    } catch (error) {
      throw new Error(`cannot reach token service ${tokenUrl.host}: ${describeFetchError(error)}`, { cause: error });
    }
    if (response.status < 200 || response.status >= 300) {
      response.body.resume();
      const access = response.status === 401 || response.status === 403 ? (this.credentials ? ' (the credentials were refused)' : ' (the image may need credentials)') : '';
      throw new Error(`token service ${tokenUrl.host} answered ${response.status} ${shortReason(response.status)}${access}`);
    }
    let body: { token?: unknown; access_token?: unknown };
    try {
      body = JSON.parse((await readLimited(response, MAX_TOKEN_BYTES, 'the token answer')).toString('utf8')) as typeof body;
    } catch (error) {
      throw new Error(`token service ${tokenUrl.host} sent an unreadable answer (${(error as Error).message.slice(0, 80)})`);
    }
    const token = body.token ?? body.access_token;
    if (typeof token !== 'string' || token === '') throw new Error(`token service ${tokenUrl.host} returned no token`);
    this.token = token;
  }
}

/** A few words for an HTTP status: what a failed pull tells the user instead of the response body. */
function shortReason(status: number): string {
  const reasons: Record<number, string> = {
    400: '(bad request)',
    401: '(unauthorized)',
    403: '(access denied)',
    404: '(not found)',
    405: '(method not allowed)',
    408: '(timeout)',
    429: '(too many requests)',
  };
  return reasons[status] ?? (status >= 500 ? '(registry error)' : '(unexpected status)');
}

function basicValue(credentials: RegistryCredentials): string {
  return Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
}

/** Parses `realm="…",service="…",scope="…"`. */
export function parseChallenge(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([a-zA-Z_]+)="([^"]*)"/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[1] !== undefined && m[2] !== undefined) out[m[1].toLowerCase()] = m[2];
  }
  return out;
}

function describeFetchError(error: unknown): string {
  if (error instanceof RegistryPolicyError) return error.message;
  if (error instanceof Error) {
    const code = (error as { code?: string }).code;
    if (error.name === 'TimeoutError' || error.name === 'AbortError') return 'timed out';
    return (code ? `${code} ${error.message}` : error.message).slice(0, 200);
  }
  return String(error).slice(0, 200);
}

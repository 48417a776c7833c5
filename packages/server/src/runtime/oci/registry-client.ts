import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { pipeline } from 'node:stream/promises';
import { isLoopbackRegistry, registryEndpoint } from './image-ref.js';
import type { ImageRef } from './image-ref.js';

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
  /** Registries (host[:port]) reached over plain HTTP besides loopback ones. */
  insecureRegistries?: readonly string[];
  /** Per-request timeout (default 30 s; blob downloads get 10 minutes). */
  timeoutMs?: number;
  /** Platform to select from an index (default linux/amd64). */
  platform?: { os: string; architecture: string; variant?: string };
}

/**
 * A minimal OCI distribution client: manifests (with index/manifest-list platform selection) and
 * blobs, with anonymous access, Docker-Hub-style bearer tokens (`WWW-Authenticate: Bearer realm=…`)
 * and HTTP basic auth. Every blob and manifest fetched by digest is verified.
 */
export class RegistryClient {
  private token: string | undefined;
  private basic = false;
  private readonly base: string;
  private readonly timeoutMs: number;
  private readonly platform: { os: string; architecture: string; variant?: string };

  constructor(
    private readonly ref: ImageRef,
    private readonly credentials: RegistryCredentials | undefined,
    options: RegistryClientOptions = {},
  ) {
    const insecure = isLoopbackRegistry(ref.registry) || (options.insecureRegistries ?? []).includes(ref.registry);
    this.base = `${insecure ? 'http' : 'https'}://${registryEndpoint(ref.registry)}/v2/${ref.repository}`;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  }

  /** Resolves the reference to a single-platform manifest; returns it with its digest. */
  async resolveManifest(): Promise<{ digest: string; manifest: ImageManifest }> {
    let reference = this.ref.digest ?? this.ref.tag;
    for (let depth = 0; depth < 3; depth++) {
      const { body, digest, mediaType } = await this.fetchManifest(reference);
      const parsed = JSON.parse(body.toString('utf8')) as { mediaType?: string; manifests?: Descriptor[]; layers?: Descriptor[]; config?: Descriptor; schemaVersion?: number };
      const type = parsed.mediaType ?? mediaType;
      if (parsed.manifests !== undefined || type === MANIFEST_TYPES.ociIndex || type === MANIFEST_TYPES.dockerList) {
        const chosen = this.selectPlatform(parsed.manifests ?? []);
        reference = chosen.digest;
        continue;
      }
      if (parsed.schemaVersion === 1) throw new Error('schema 1 manifests are not supported');
      if (!parsed.config || !Array.isArray(parsed.layers)) throw new Error(`unsupported manifest (media type ${type ?? 'unknown'})`);
      return { digest, manifest: { mediaType: type, config: parsed.config, layers: parsed.layers } };
    }
    throw new Error('manifest index nesting too deep');
  }

  private selectPlatform(manifests: Descriptor[]): Descriptor {
    const { os, architecture, variant } = this.platform;
    const candidates = manifests.filter((m) => m.platform?.os === os && m.platform.architecture === architecture);
    const chosen = candidates.find((m) => variant === undefined || m.platform?.variant === variant) ?? candidates[0];
    if (!chosen) {
      const offered = manifests.map((m) => `${m.platform?.os ?? '?'}/${m.platform?.architecture ?? '?'}`).join(', ');
      throw new Error(`no ${os}/${architecture} image in the index (offers ${offered || 'nothing'})`);
    }
    return chosen;
  }

  private async fetchManifest(reference: string): Promise<{ body: Buffer; digest: string; mediaType: string | undefined }> {
    const response = await this.request(`${this.base}/manifests/${reference}`, {
      accept: Object.values(MANIFEST_TYPES).join(', '),
    });
    const body = Buffer.from(await response.arrayBuffer());
    const computed = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (reference.startsWith('sha256:') && computed !== reference) {
      throw new Error(`manifest digest mismatch: asked for ${reference}, got ${computed}`);
    }
    const mediaType = response.headers.get('content-type')?.split(';')[0]?.trim();
    return { body, digest: computed, mediaType };
  }

  /** Fetches a small blob (an image config) into memory and verifies its digest. */
  async fetchBlob(digest: string): Promise<Buffer> {
    const response = await this.request(`${this.base}/blobs/${digest}`, {});
    const body = Buffer.from(await response.arrayBuffer());
    const computed = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (computed !== digest) throw new Error(`blob digest mismatch: expected ${digest}, got ${computed}`);
    return body;
  }

  /** Streams a blob to `path` (via a temporary file), verifying its digest before the rename. */
  async downloadBlob(digest: string, path: string): Promise<void> {
    const response = await this.request(`${this.base}/blobs/${digest}`, {}, 10 * 60_000);
    if (!response.body) throw new Error(`empty response for blob ${digest}`);
    const hash = createHash('sha256');
    const hasher = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    const tmp = `${path}.part-${process.pid}-${Math.random().toString(36).slice(2)}`;
    try {
      await pipeline(Readable.fromWeb(response.body as WebReadableStream<Uint8Array>), hasher, createWriteStream(tmp));
      const computed = `sha256:${hash.digest('hex')}`;
      if (computed !== digest) throw new Error(`blob digest mismatch: expected ${digest}, got ${computed}`);
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** GET with authentication: retries once after a 401 with a bearer token or basic credentials. */
  private async request(url: string, headers: Record<string, string>, timeoutMs = this.timeoutMs): Promise<Response> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const auth: Record<string, string> = {};
      if (this.token !== undefined) auth['authorization'] = `Bearer ${this.token}`;
      else if (this.basic && this.credentials) auth['authorization'] = `Basic ${basicValue(this.credentials)}`;
      let response: Response;
      try {
        response = await fetch(url, { headers: { ...headers, ...auth }, signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' });
      } catch (error) {
        throw new Error(`cannot reach registry ${this.ref.registry} (${url}): ${describeFetchError(error)}`, { cause: error });
      }
      if (response.status === 401 && attempt === 0) {
        await response.body?.cancel();
        await this.authenticate(response.headers.get('www-authenticate') ?? '');
        continue;
      }
      if (!response.ok) {
        const text = (await response.text().catch(() => '')).slice(0, 500);
        throw new Error(`registry ${this.ref.registry} answered ${response.status} for ${url}${text ? `: ${text.trim()}` : ''}`);
      }
      return response;
    }
    throw new Error(`registry ${this.ref.registry} refused the credentials for ${url} (401)`);
  }

  private async authenticate(challenge: string): Promise<void> {
    const scheme = challenge.split(' ')[0]?.toLowerCase();
    if (scheme === 'basic') {
      if (!this.credentials) throw new Error(`registry ${this.ref.registry} requires credentials (basic auth) and none were given`);
      this.basic = true;
      return;
    }
    if (scheme !== 'bearer') throw new Error(`registry ${this.ref.registry} sent an unsupported auth challenge: ${challenge || '(none)'}`);
    const params = parseChallenge(challenge.slice(challenge.indexOf(' ') + 1));
    const realm = params['realm'];
    if (!realm) throw new Error(`registry ${this.ref.registry}: bearer challenge without realm`);
    const tokenUrl = new URL(realm);
    if (params['service']) tokenUrl.searchParams.set('service', params['service']);
    tokenUrl.searchParams.set('scope', params['scope'] ?? `repository:${this.ref.repository}:pull`);
    const headers: Record<string, string> = {};
    if (this.credentials) headers['authorization'] = `Basic ${basicValue(this.credentials)}`;
    let response: Response;
    try {
      response = await fetch(tokenUrl, { headers, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw new Error(`cannot reach token service ${tokenUrl.origin}: ${describeFetchError(error)}`, { cause: error });
    }
    if (!response.ok) throw new Error(`token service ${tokenUrl.origin} answered ${response.status}: ${(await response.text()).slice(0, 300)}`);
    const body = (await response.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new Error(`token service ${tokenUrl.origin} returned no token`);
    this.token = token;
  }
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
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    const causeText = cause instanceof Error ? `${(cause as { code?: string }).code ?? ''} ${cause.message}`.trim() : '';
    return causeText ? `${error.message}: ${causeText}` : error.message;
  }
  return String(error);
}

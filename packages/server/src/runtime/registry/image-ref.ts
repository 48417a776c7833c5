/** A parsed image reference. */
export interface ImageRef {
  /** Registry host as written (`127.0.0.1:5000`, `docker.io`, `ghcr.io`). */
  registry: string;
  /** Repository path inside the registry (`library/busybox`, `corral/busybox`). */
  repository: string;
  /** Tag, when the reference has no digest (default `latest`). */
  tag: string;
  /** `sha256:…` when the reference pins a digest. */
  digest: string | undefined;
  /** Canonical text: `registry/repository:tag` or `registry/repository@digest`. */
  canonical: string;
  /** The reference as written without its tag and digest (`python`, `127.0.0.1:5000/corral/busybox`): what Docker's API takes as a repository. */
  name: string;
}

const DOCKER_HUB = 'docker.io';

/**
 * Parses `busybox`, `library/busybox:1`, `127.0.0.1:5000/corral/busybox:latest` or
 * `ghcr.io/o/r@sha256:…` the way Docker does: the first component is a registry when it contains
 * a `.` or `:` or is `localhost`; otherwise the image is on Docker Hub (`library/` for one-part names).
 */
export function parseImageRef(reference: string): ImageRef {
  const text = reference.trim();
  if (text === '' || /\s/.test(text)) throw new Error(`invalid image reference ${JSON.stringify(reference)}`);
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`invalid digest in image reference ${JSON.stringify(reference)}`);
  }
  let tag = 'latest';
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const name = rest;
  let registry = DOCKER_HUB;
  const parts = rest.split('/');
  const first = parts[0] ?? '';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    parts.shift();
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  let repository = parts.join('/');
  if (registry === DOCKER_HUB && parts.length === 1) repository = `library/${repository}`;
  if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(repository)) {
    throw new Error(`invalid repository name in image reference ${JSON.stringify(reference)}`);
  }
  if (!/^[\w][\w.-]{0,127}$/.test(tag)) throw new Error(`invalid tag in image reference ${JSON.stringify(reference)}`);
  const canonical = digest !== undefined ? `${registry}/${repository}@${digest}` : `${registry}/${repository}:${tag}`;
  return { registry, repository, tag, digest, canonical, name };
}

/** The host an HTTP client talks to for a registry (`registry-1.docker.io` for Docker Hub). */
export function registryEndpoint(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
}

/**
 * The registry host a credential's `server` names, in the form image references use:
 * `https://index.docker.io/v1/` → `docker.io`, `GHCR.io/` → `ghcr.io`, `127.0.0.1:5001` unchanged.
 */
export function normalizeRegistryHost(server: string): string {
  let host = server.trim().toLowerCase().replace(/^[a-z][a-z0-9+.-]*:\/\//, '');
  host = host.split('/')[0] ?? '';
  if (host === 'index.docker.io' || host === 'registry-1.docker.io' || host === 'registry.hub.docker.com') return DOCKER_HUB;
  return host;
}

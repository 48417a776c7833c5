import { parseImageRef } from '../registry/image-ref.js';

/** The registry host of built images (`corral.local/<owner>/<name>:<tag>`), as the image service names them. */
const BUILT_REGISTRY = 'corral.local';

/** Credentials of a registry Corral pushes to. */
export interface RegistryLogin {
  username: string;
  password: string;
}

/**
 * Where a driver whose sandboxes pull from a registry (kubernetes) publishes built images: a
 * registry host and a repository path under it (`CORRAL_K8S_IMAGE_REGISTRY`, `host[:port]/prefix`).
 * `corral.local/<owner>/<name>:<tag>` is published as `<host>/<prefix>/<owner>/<name>:<tag>`.
 *
 * The prefix's path is reserved on every registry host, not only this one: one registry answers to
 * many names (`localhost:5000`, `127.0.0.1:5000`, a DNS alias), and a reference under the prefix
 * would let a user pull another owner's image past the owner check of `corral.local` images.
 */
export class BuiltImageRegistry {
  /** `host[:port]`. */
  readonly host: string;
  /** The repository path under the host (`corral-built`). */
  readonly prefix: string;

  constructor(
    setting: string,
    /** Used for pushes, deletes and the sandboxes' pulls; undefined: anonymous. */
    readonly login?: RegistryLogin,
  ) {
    const slash = setting.indexOf('/');
    if (slash < 1 || slash === setting.length - 1) throw new Error(`a built-image registry is host[:port]/prefix, got "${setting}"`);
    this.host = setting.slice(0, slash).toLowerCase();
    this.prefix = setting.slice(slash + 1).replace(/\/+$/, '');
  }

  /** `host[:port]/prefix`. */
  toString(): string {
    return `${this.host}/${this.prefix}`;
  }

  /** Where `corral.local/<owner>/<name>:<tag>` is published; throws for any other reference. */
  publishedRef(builtRef: string): string {
    const ref = parseImageRef(builtRef);
    if (ref.registry.toLowerCase() !== BUILT_REGISTRY || ref.digest !== undefined) throw new Error(`${builtRef} is not a built image (corral.local/<owner>/<name>:<tag>)`);
    return `${this.host}/${this.prefix}/${ref.repository}:${ref.tag}`;
  }

  /**
   * Why `reference` may not be used as an image a user names (`docker_image`, `FROM`,
   * `source_image`): it lies under the prefix's path (on any registry host). Undefined otherwise,
   * and for references that do not parse (those fail elsewhere with their own reason).
   */
  refusal(reference: string): string | undefined {
    let repository: string;
    try {
      repository = parseImageRef(reference).repository.toLowerCase();
    } catch {
      return undefined;
    }
    if (repository !== this.prefix && !repository.startsWith(`${this.prefix}/`)) return undefined;
    return `${reference} names the repository path where this server publishes built images (${this.prefix}/…); use the built image as corral.local/<owner>/<name>:<tag> (GET /api/v1/images lists yours)`;
  }
}

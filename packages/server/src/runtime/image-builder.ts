/** One Dockerfile build for a driver's builder. */
export interface ImageBuildRequest {
  /** The build context: a tarball (plain, gzip or zstd) the caller uploaded. */
  contextTar: string;
  /** The Dockerfile's path inside the context. */
  dockerfilePath: string;
  /** What the result is named in the driver's image store (`corral.local/<owner>/<name>:<tag>`). */
  reference: string;
  /** Builds with the same key share a layer cache (one per owner). */
  cacheKey: string;
  /**
   * Whether a `FROM` image may be used by this build's owner: refusing keeps one user's built
   * images out of another's builds. Called for every base image before it is resolved.
   */
  mayUseBase(reference: string): Promise<boolean>;
  /** Receives the builder's output as it comes. */
  onOutput(chunk: string): void;
}

/** What a finished build made. */
export interface ImageBuildResult {
  /** The reference it is stored under. */
  reference: string;
  /** The driver's id for it (a manifest digest). */
  digest: string;
  /** Bytes of the image (its layers, as archived). */
  sizeBytes: number;
}

/** A build that did not finish: the step that failed, when one did, and the tail of the output. */
export class ImageBuildError extends Error {
  constructor(
    message: string,
    readonly failedStep: string | null,
    readonly outputTail: string,
  ) {
    super(message);
    this.name = 'ImageBuildError';
  }
}

/**
 * A driver's Dockerfile builder: runs a build as contained as a sandbox (no network unless the
 * operator allows it, CPU, memory and time limits, no privileged code on the host) and stores the
 * result where the driver's sandboxes find it.
 */
export interface ImageBuilder {
  /** Why builds cannot run on this host (a missing tool), or undefined. */
  unavailable(): Promise<string | undefined>;
  /** Builds and stores the image; rejects with {@link ImageBuildError}. */
  build(request: ImageBuildRequest): Promise<ImageBuildResult>;
  /** Removes a built image from the driver's store. */
  remove(reference: string): Promise<void>;
}

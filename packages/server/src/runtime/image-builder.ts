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
  /**
   * The build owner's registry credentials for a base image's registry (their own or their team's,
   * saved with `POST /template/registry-credentials`), or undefined: a `FROM` of a private registry
   * image is pulled with them, and an image pulled with credentials before is used only once its
   * registry accepts these.
   */
  baseCredentials?(reference: string): Promise<{ username: string; password: string } | undefined>;
  /** Receives the builder's output as it comes. */
  onOutput(chunk: string): void;
}

/** One copy of an existing image from a registry into the driver's store (Prime's `source_image`). */
export interface ImageTransferRequest {
  /** The image to copy, as a reference (`host[:port]/repository:tag`, or a Docker Hub name). */
  source: string;
  /** The user's registry credentials for the source's registry, when they chose some. */
  credentials?: { username: string; password: string };
  /** What the copy is named in the driver's image store (`corral.local/<owner>/<name>:<tag>`). */
  reference: string;
  /** Receives progress as it comes. */
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

/** Most of a build's output a builder keeps in memory for the failure report. */
export const OUTPUT_TAIL_BYTES = 64 * 1024;
/** How much of that output goes with a failure (`ImageBuildError.outputTail`). */
export const FAILURE_TAIL_BYTES = 4 * 1024;

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
  /**
   * Copies an image from a registry the driver may reach into its store under `reference`;
   * rejects with {@link ImageBuildError} saying why a registry refused.
   */
  transfer(request: ImageTransferRequest): Promise<ImageBuildResult>;
  /** Stores the image `from` under `to` instead (a rename or a move to another owner); the digest it has there. */
  rename(from: string, to: string): Promise<string>;
  /** Removes a built image from the driver's store. */
  remove(reference: string): Promise<void>;
  /**
   * Why an image reference a user names (`docker_image`, `FROM`, `source_image`) is refused on this
   * driver, or undefined: where the builder publishes built images to a registry, references to
   * that place would bypass the owner check of `corral.local` images. Absent: nothing is refused.
   */
  refusal?(reference: string): string | undefined;
}

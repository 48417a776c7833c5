/** One image in a driver's local image store. */
export interface RuntimeImage {
  /** The name it answers to (`python:3.11-slim`, `docker.io/library/busybox:latest`), as the driver keeps it. */
  reference: string;
  /** The driver's id for it (an image id or a manifest digest, `sha256:…`). */
  id: string;
  /** Where it came from: `rootfs`, `docker-archive`, `oci-archive`, `oci-dir`, `registry`, `docker`, or `built <kind>`. */
  source: string;
}

/** Image config for an image made from a bare rootfs tarball. */
export interface RootfsImageConfig {
  /** `KEY=value` environment (default: a standard `PATH`). */
  readonly env?: readonly string[];
  /** Default command (default `["sh"]`). */
  readonly cmd?: readonly string[];
  /** Image labels, where the driver's store keeps labels (the docker driver does; the oci driver ignores them). */
  readonly labels?: Readonly<Record<string, string>>;
}

/**
 * A driver's local image store, without a registry: what `corral images` and the tests use to put
 * images where the driver finds them. Each driver implements it in its own folder; callers get one
 * from `createRuntimeImages` (create-runtime.ts), which starts no driver.
 */
export interface RuntimeImages {
  /** Imports a rootfs tarball as a one-layer image named `reference`. */
  importRootfs(rootfsTar: string, reference: string, config?: RootfsImageConfig): Promise<RuntimeImage>;
  /**
   * Imports an image archive with its layers: a `docker save` tarball or an OCI layout (tarball or
   * directory, see `detectArchiveFormat`). Named `reference` when given, else by the name the archive carries.
   */
  importArchive(path: string, reference?: string): Promise<RuntimeImage>;
  /** The images the store holds, one entry per name. */
  list(): Promise<RuntimeImage[]>;
}

import { type ImageBuilder, ImageBuildError, type ImageBuildRequest, type ImageBuildResult, type ImageTransferRequest } from '../image-builder.js';
import type { BuiltImageRegistry } from './built-image-registry.js';
import { deleteFromRegistry, exportImage } from './image-export.js';
import type { ImageStore } from './image-store.js';

/** What {@link PublishingImageBuilder} needs besides the builder it wraps. */
export interface PublishingImageBuilderOptions {
  /** The builder's image store (where `inner` stores its results). */
  images: ImageStore;
  /** Where results are published. */
  registry: BuiltImageRegistry;
  /** Registries (`host[:port]`) reached over plain HTTP or unverified TLS. */
  insecureRegistries: readonly string[];
  /** Scratch space for the OCI layouts pushed. */
  workDir: string;
  /** Receives what went wrong in best-effort steps (a registry refusing a delete). */
  onWarning?(message: string, error: unknown): void;
}

/**
 * A daemonless builder (buildah, its own image store on the server's host) for drivers whose
 * sandboxes pull images from a registry: every build, transfer and rename is stored as the inner
 * builder stores it and then pushed to the registry (`corral.local/<owner>/<name>:<tag>` as
 * `<host>/<prefix>/<owner>/<name>:<tag>`); a remove deletes it from the store and, best effort,
 * from the registry. `FROM` and `source_image` references under the prefix are refused.
 */
export class PublishingImageBuilder implements ImageBuilder {
  constructor(
    private readonly inner: ImageBuilder,
    private readonly options: PublishingImageBuilderOptions,
  ) {}

  unavailable(): Promise<string | undefined> {
    return this.inner.unavailable();
  }

  refusal(reference: string): string | undefined {
    return this.options.registry.refusal(reference);
  }

  async build(request: ImageBuildRequest): Promise<ImageBuildResult> {
    const result = await this.inner.build({
      ...request,
      mayUseBase: async (reference) => this.refusal(reference) === undefined && (await request.mayUseBase(reference)),
    });
    await this.publish(result.reference, request.onOutput, true);
    return result;
  }

  async transfer(request: ImageTransferRequest): Promise<ImageBuildResult> {
    const refused = this.refusal(request.source);
    if (refused !== undefined) throw new ImageBuildError(`source_image ${refused}`, null, '');
    const result = await this.inner.transfer(request);
    await this.publish(result.reference, request.onOutput, true);
    return result;
  }

  async rename(from: string, to: string): Promise<string> {
    const digest = await this.inner.rename(from, to);
    await this.publish(to, () => undefined, false);
    await this.unpublish(from, true);
    return digest;
  }

  /** Removes the image from the store, then from the registry: rejects with the registry's refusal (the caller logs it), the store's copy gone. */
  async remove(reference: string): Promise<void> {
    await this.inner.remove(reference);
    await this.unpublish(reference, false);
  }

  /**
   * Pushes the stored image `reference` to the registry; rejects with {@link ImageBuildError} when it
   * cannot, after removing the image from the store when `dropOnFailure` (a build or transfer fails whole).
   */
  private async publish(reference: string, onOutput: (chunk: string) => void, dropOnFailure: boolean): Promise<void> {
    const target = this.options.registry.publishedRef(reference);
    const record = await this.options.images.get(reference);
    try {
      if (!record) throw new Error(`${reference} is not in the image store`);
      onOutput(`corral: pushing ${target}\n`);
      const login = this.options.registry.login;
      await exportImage(this.options.images, record, { kind: 'registry', reference: target, ...(login ? { credentials: login } : {}) }, {
        workDir: this.options.workDir,
        insecureRegistries: this.options.insecureRegistries,
      });
      onOutput(`corral: pushed ${target}\n`);
    } catch (error) {
      if (dropOnFailure) await this.options.images.remove(reference).catch(() => undefined);
      throw new ImageBuildError(`pushing ${target} to the image registry failed: ${(error as Error).message.slice(-1500)}`, null, '');
    }
  }

  /**
   * Deletes `reference`'s published copy (registries may refuse deletes: 405 unless enabled). A
   * failure rejects, or with `quiet` goes to `onWarning`.
   */
  private async unpublish(reference: string, quiet: boolean): Promise<void> {
    const target = this.options.registry.publishedRef(reference);
    const login = this.options.registry.login;
    try {
      await deleteFromRegistry(target, { workDir: this.options.workDir, insecureRegistries: this.options.insecureRegistries, ...(login ? { credentials: login } : {}) });
    } catch (error) {
      const message = `deleting ${target} from the image registry failed (it stays there, unreachable through Corral)`;
      if (!quiet) throw new Error(`${message}: ${(error as Error).message}`, { cause: error });
      this.options.onWarning?.(message, error);
    }
  }
}

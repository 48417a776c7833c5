import { join } from 'node:path';
import type { RootfsImageConfig, RuntimeImage, RuntimeImages } from '../runtime-images.js';
import { ImageStore } from '../oci-images/image-store.js';
import type { ImageRecord } from '../oci-images/image-store.js';

function entry(record: ImageRecord): RuntimeImage {
  return { reference: record.ref, id: record.digest, source: record.source };
}

/**
 * The oci driver's image store, `<stateDir>/images` (the same store `OciRuntime` pulls into), opened
 * without starting the driver. Labels are not kept.
 */
export class OciRuntimeImages implements RuntimeImages {
  private readonly store: ImageStore;

  constructor(stateDir: string) {
    this.store = new ImageStore({ root: join(stateDir, 'images') });
  }

  async importRootfs(rootfsTar: string, reference: string, config: RootfsImageConfig = {}): Promise<RuntimeImage> {
    return entry(
      await this.store.importRootfs(rootfsTar, reference, {
        ...(config.env !== undefined ? { env: [...config.env] } : {}),
        ...(config.cmd !== undefined ? { cmd: [...config.cmd] } : {}),
      }),
    );
  }

  async importArchive(path: string, reference?: string): Promise<RuntimeImage> {
    return entry(await this.store.importArchive(path, reference));
  }

  async list(): Promise<RuntimeImage[]> {
    return (await this.store.list()).map(entry);
  }
}

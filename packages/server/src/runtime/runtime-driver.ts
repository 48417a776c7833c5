import type { CorralConfig } from '../config.js';
import type { SandboxRuntime } from './runtime.js';
import type { RuntimeImages } from './runtime-images.js';

/**
 * What each driver folder exports (`<driver>/<driver>-driver.ts`) for `create-runtime.ts`: how to
 * start the driver from the settings, and how to open its local image store without starting it.
 * The module stays cheap to import; the driver's own code loads in `create`.
 */
export interface RuntimeDriver {
  /** Builds the driver from the settings and initialises it. */
  create(config: CorralConfig): Promise<SandboxRuntime>;
  /** The driver's local image store (what `corral images` and tests put images into). */
  images(config: Pick<CorralConfig, 'dataDir'>): Promise<RuntimeImages>;
}

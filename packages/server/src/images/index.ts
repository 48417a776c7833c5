/**
 * Images on a machine without a registry: offline rootfs builds (mmdebstrap, busybox-static),
 * imported into a driver's image store through `RuntimeImages` (`image-catalog.ts`), OCI layouts
 * (umoci) and pushes to a local registry (skopeo). See docs/images.md.
 */
export { buildRootfs, rootfsKey } from './rootfs.js';
export type { BuildRootfsOptions, BuiltRootfs } from './rootfs.js';
export { DEFAULT_TAGS, buildImage, importImage } from './image-catalog.js';
export { buildOciLayout, pushToRegistry } from './oci.js';
export type { OciConfigOptions, PushOptions } from './oci.js';
export { freePort, registryConfig, startLocalRegistry, waitForRegistry } from './registry.js';
export type { LocalRegistry, LocalRegistryOptions } from './registry.js';
export { DEFAULT_PATH, RECIPE_LABEL, RECIPES } from './recipes.js';
export type { RootfsKind, RootfsRecipe } from './recipes.js';
export { cacheDir, ociCacheDir, rootfsCacheDir } from './paths.js';
export { MissingToolError, ToolFailedError, findTool, requireTool } from './tools.js';
export { ensureOciLayout, pushRootfsImage } from './push-kind.js';

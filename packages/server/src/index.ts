/** Corral's server package: configuration, the server itself, and the pieces tools build on. */
export { loadConfig, describeSettings, SETTINGS, type CorralConfig, type RuntimeDriverName } from './config.js';
export { createCorralServer, type CorralServer } from './server.js';
export { ERROR_STATUS, type ErrorCode } from './errors/error-codes.js';
export { ApiError, type FieldError } from './errors/api-error.js';
export type { SandboxRuntime, SandboxSpec, ExecRequest, ExecProcess, RuntimeEvent } from './runtime/runtime.js';
export type { Store } from './store/store.js';
export { openStore, type StoreLocation } from './store/open-store.js';
export { createRuntime, createRuntimeImages, ociStateDir } from './runtime/create-runtime.js';
export type { RuntimeImage, RuntimeImages } from './runtime/runtime-images.js';
export { DEFAULT_TAGS, buildImage, importImage } from './images/image-catalog.js';

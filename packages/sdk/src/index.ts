/** The Corral TypeScript SDK. The typed client lands with the SDK issue; this module names the package version. */
export const SDK_VERSION = '0.1.0';

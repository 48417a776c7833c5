/**
 * The local registries the test infrastructure runs (scripts/start-registry.sh): 127.0.0.1:5000
 * without auth and 127.0.0.1:5001 with basic auth. Pulls reach loopback registries only when
 * listed (CORRAL_REGISTRY_INSECURE / `insecureRegistries`), so tests that pull from them pass this.
 */
export const LOCAL_TEST_REGISTRIES: readonly string[] = ['127.0.0.1:5000', '127.0.0.1:5001'];

/** {@link LOCAL_TEST_REGISTRIES} plus the registry of `image` (a test may name another local one). */
export function insecureRegistriesFor(image: string): string[] {
  const registry = image.split('/')[0] ?? '';
  return [...new Set([...LOCAL_TEST_REGISTRIES, ...(registry.includes(':') || registry.includes('.') ? [registry] : [])])];
}

/**
 * Whether the local registry at `host` answers `GET /v2/` (200, or 401 from the one with auth).
 * The wait is long because a loaded CI host has taken over a second to answer.
 */
export async function localRegistryAnswers(host: string, timeoutMs = 15_000): Promise<boolean> {
  try {
    const response = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(timeoutMs) });
    return response.status === 200 || response.status === 401;
  } catch {
    return false;
  }
}

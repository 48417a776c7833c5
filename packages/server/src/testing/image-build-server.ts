import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CorralConfig } from '../config.js';
import { buildImage } from '../images/image-catalog.js';
import type { RootfsKind } from '../images/recipes.js';
import { createRuntimeImages } from '../runtime/create-runtime.js';
import { driverMissing, ociMissing } from './runtime-available.js';
import { type ListeningTestServer, startListeningServer } from './test-server.js';

/** Why real Dockerfile builds cannot run here on `driver` (oci: its tools, buildah, skopeo; docker: the engine), or undefined. */
export function imageBuildMissing(driver: 'oci' | 'docker' = 'oci'): string | undefined {
  if (driver === 'docker') return driverMissing('docker');
  const oci = ociMissing();
  if (oci !== undefined) return oci;
  try {
    execFileSync('buildah', ['--version'], { stdio: 'ignore' });
    execFileSync('skopeo', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'buildah or skopeo missing (run scripts/ensure-oci.sh)';
  }
}

/**
 * A listening server on `driver` (default oci) with a fresh data dir whose image store holds the
 * offline `kinds` (default busybox) as `scripts/build-images.sh` names them, so Dockerfiles `FROM`
 * them build without a registry. `close` removes its sandboxes and the data dir.
 */
export async function startImageBuildServer(
  prefix: string,
  overrides: Partial<CorralConfig> = {},
  kinds: RootfsKind[] = ['busybox'],
  driver: 'oci' | 'docker' = 'oci',
): Promise<ListeningTestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), `corral-${prefix}-`));
  const images = await createRuntimeImages({ runtime: driver, dataDir });
  for (const kind of kinds) await buildImage(kind, kind === 'python' ? 'python:3.11-slim' : 'busybox:latest', images);
  const server = await startListeningServer(prefix, { runtime: driver, dataDir, reconcileIntervalMs: 300, ...overrides });
  return {
    ...server,
    async close() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseImageRef } from '../registry/image-ref.js';
import { runTool } from '../run-tool.js';
import type { ImageRecord, ImageStore } from './image-store.js';

/**
 * Copies `reference` from a Docker Engine (`skopeo copy docker-daemon:<reference> oci:…`, the
 * engine's `docker save`) into `store` under the same name: layers unpacked as any import's
 * (checked, whiteouts converted), so images the engine holds (built offline, or pulled by it)
 * serve as bases without a registry. `daemonHost` when not the default socket. Rejects with skopeo's error.
 */
export async function importFromDockerDaemon(
  store: ImageStore,
  reference: string,
  options: { workDir: string; daemonHost?: string; timeoutMs?: number },
): Promise<ImageRecord> {
  const canonical = parseImageRef(reference).canonical;
  await mkdir(options.workDir, { recursive: true, mode: 0o700 });
  const work = await mkdtemp(join(options.workDir, 'engine-'));
  try {
    const policy = join(work, 'policy.json');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const layout = join(work, 'layout');
    await runTool(
      'skopeo',
      ['copy', '--quiet', '--policy', policy, ...(options.daemonHost !== undefined ? ['--src-daemon-host', options.daemonHost] : []), `docker-daemon:${canonical}`, `oci:${layout}:latest`],
      { timeoutMs: options.timeoutMs ?? 30 * 60_000 },
    );
    return (await store.importLayout(layout, canonical, new Map())).record;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import type { ImagesListOptions } from './list.js';

/** `corral images list`: the images API's rows, or the local store with `--local`/`--runtime`/`--data-dir`. */
export async function listImages(options: ImagesListOptions, globals: GlobalOptions): Promise<void> {
  if (options.local || options.runtime !== undefined || options.dataDir !== undefined) {
    if (options.team !== undefined || options.search !== undefined) throw new Error('--team and --search apply to the server\'s images, not the local store');
    const { imageTarget } = await import('./image-target.js');
    const list = await (await imageTarget(options)).list();
    printResult(globals.output, { images: list }, list as unknown as Array<Record<string, unknown>>, ['reference', 'id', 'source']);
    return;
  }
  const client = clientFor(globals);
  const data: Awaited<ReturnType<typeof client.images.list>>['data'] = [];
  const rows: Array<Record<string, unknown>> = [];
  for (let offset = 0; ; ) {
    const page = await client.images.list({ offset, limit: 250, ...(options.team !== undefined ? { teamId: options.team } : {}), ...(options.search !== undefined ? { search: options.search } : {}) });
    for (const row of page.data) {
      data.push(row);
      rows.push({
        image: row.fullImagePath ?? `${row.imageName}:${row.imageTag}`,
        name: `${row.imageName}:${row.imageTag}`,
        status: row.status,
        owner: row.ownerType === 'team' ? `team ${row.teamId ?? ''}` : 'personal',
        size: row.sizeBytes === null ? null : `${(row.sizeBytes / 1024 / 1024).toFixed(1)} MB`,
        created: row.pushedAt ?? row.createdAt,
      });
    }
    offset += page.data.length;
    if (page.data.length === 0 || offset >= page.total_count) break;
  }
  // JSON: the API's rows as they are (every page).
  printResult(globals.output, { data, total_count: data.length }, rows, ['image', 'name', 'status', 'owner', 'size', 'created']);
}

import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import type { ImageTargetOptions } from './image-target.js';

/** `corral images build <python|busybox>`: builds an offline preset and imports it into the local runtime's store. */
export async function buildPreset(kind: 'python' | 'busybox', options: ImageTargetOptions & { tag?: string }, globals: GlobalOptions): Promise<void> {
  const [{ DEFAULT_TAGS, buildImage }, { imageTarget }] = await Promise.all([import('@corral/server'), import('./image-target.js')]);
  const image = await buildImage(kind, options.tag ?? DEFAULT_TAGS[kind], await imageTarget(options), (line) => process.stderr.write(`${line}\n`));
  printResult(globals.output, image, [image as unknown as Record<string, unknown>], ['reference', 'id', 'source']);
}

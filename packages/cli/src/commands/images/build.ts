import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import type { ImageTargetOptions } from './image-target.js';

/** `corral images build <python|busybox>`: builds an image offline and imports it into the runtime. */
export function registerImagesBuild(images: Command): void {
  images
    .command('build <kind>')
    .description('Build an image without a registry: python (Debian bookworm + python3 3.11, tagged python:3.11-slim) or busybox')
    .option('--tag <ref>', 'name to give the image (default: python:3.11-slim / busybox:latest)')
    .option('--runtime <driver>', 'docker or oci (default: CORRAL_RUNTIME)')
    .option('--data-dir <dir>', "the server's data dir, for oci (default: CORRAL_DATA_DIR)")
    .action(
      run(async (kind: string, options: ImageTargetOptions & { tag?: string }, globals: GlobalOptions) => {
        // The server package (and its image code) loads when the command runs, not at start-up.
        const [{ DEFAULT_TAGS, buildImage }, { imageTarget }] = await Promise.all([import('@corral/server'), import('./image-target.js')]);
        if (kind !== 'python' && kind !== 'busybox') throw new Error(`unknown image kind "${kind}": use python or busybox`);
        const image = await buildImage(kind, options.tag ?? DEFAULT_TAGS[kind], await imageTarget(options), (line) => process.stderr.write(`${line}\n`));
        printResult(globals.output, image, [image as unknown as Record<string, unknown>], ['reference', 'id', 'source']);
      }),
    );
}

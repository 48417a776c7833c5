import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import type { ImageTargetOptions } from './image-target.js';

/** `corral images list`. */
export function registerImagesList(images: Command): void {
  images
    .command('list')
    .description('List the images the runtime has locally')
    .option('--runtime <driver>', 'docker or oci (default: CORRAL_RUNTIME)')
    .option('--data-dir <dir>', "the server's data dir, for oci (default: CORRAL_DATA_DIR)")
    .action(
      run(async (options: ImageTargetOptions, globals: GlobalOptions) => {
        // The image code loads when the command runs, not at start-up.
        const { imageTarget } = await import('./image-target.js');
        const list = await (await imageTarget(options)).list();
        printResult(globals.output, { images: list }, list as unknown as Array<Record<string, unknown>>, ['reference', 'id', 'source']);
      }),
    );
}

import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import type { ImageTargetOptions } from './image-target.js';

/** `corral images import <file>`: a rootfs tarball, a `docker save` tarball or an OCI layout. */
export function registerImagesImport(images: Command): void {
  images
    .command('import <file>')
    .description('Import a rootfs tarball, a docker-save tarball or an OCI layout (tarball or directory)')
    .option('--tag <ref>', 'name to give the image (required for a rootfs tarball)')
    .option('--runtime <driver>', 'docker or oci (default: CORRAL_RUNTIME)')
    .option('--data-dir <dir>', "the server's data dir, for oci (default: CORRAL_DATA_DIR)")
    .action(
      run(async (file: string, options: ImageTargetOptions & { tag?: string }, globals: GlobalOptions) => {
        // The server package (and its image code) loads when the command runs, not at start-up.
        const [{ importImage }, { imageTarget }] = await Promise.all([import('@corral/server'), import('./image-target.js')]);
        const image = await importImage(file, options.tag, await imageTarget(options));
        printResult(globals.output, image, [image as unknown as Record<string, unknown>], ['reference', 'id', 'source']);
      }),
    );
}

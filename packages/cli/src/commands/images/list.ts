import type { Command } from 'commander';
import { lazy } from '../../run.js';
import type { ImageTargetOptions } from './image-target.js';

/** The flags of `corral images list`. */
export interface ImagesListOptions extends ImageTargetOptions {
  local?: boolean;
  team?: string;
  search?: string;
}

/** `corral images list`: the server's images (images API); `--local`, `--runtime` or `--data-dir`: the local runtime's store. */
export function registerImagesList(images: Command): void {
  images
    .command('list')
    .description("List your images on the server (built ones, and builds not finished); with --local, --runtime or --data-dir: the images the local runtime's store has")
    .option('--team <id>', "the server's images of this team")
    .option('--search <text>', 'only images whose name or tag contains this')
    .option('--local', "list the local runtime's store instead of the server's images")
    .option('--runtime <driver>', 'local store: docker or oci (default: CORRAL_RUNTIME)')
    .option('--data-dir <dir>', "local store: the server's data dir, for oci (default: CORRAL_DATA_DIR)")
    .action(lazy<[ImagesListOptions]>(async () => (await import('./list-action.js')).listImages));
}

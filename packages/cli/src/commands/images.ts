import type { Command } from 'commander';
import { registerImagesBuild } from './images/build.js';
import { registerImagesDelete } from './images/delete.js';
import { registerImagesImport } from './images/import.js';
import { registerImagesList } from './images/list.js';

/**
 * `corral images build|list|delete`: images built from Dockerfiles through the server's images API;
 * `build <python|busybox>`, `import` and `list --local`: the local runtime's store, with no registry.
 */
export function registerImages(program: Command): void {
  const images = program.command('images').description('Build sandbox images from Dockerfiles on the server, list and delete them; build offline presets and import images into the local store');
  registerImagesBuild(images);
  registerImagesImport(images);
  registerImagesList(images);
  registerImagesDelete(images);
}

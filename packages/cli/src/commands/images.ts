import type { Command } from 'commander';
import { registerImagesBuild } from './images/build.js';
import { registerImagesImport } from './images/import.js';
import { registerImagesList } from './images/list.js';

/** `corral images build|import|list`: images on a machine with no registry. Works on the local runtime directly. */
export function registerImages(program: Command): void {
  const images = program.command('images').description('Build, import and list sandbox images (no registry needed)');
  registerImagesBuild(images);
  registerImagesImport(images);
  registerImagesList(images);
}

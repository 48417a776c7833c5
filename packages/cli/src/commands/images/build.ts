import type { Command } from 'commander';
import { lazy } from '../../run.js';
import type { ContextBuildOptions } from './build-context.js';
import type { ImageTargetOptions } from './image-target.js';

/** The flags of `corral images build`. */
export type ImagesBuildOptions = ImageTargetOptions & ContextBuildOptions;

/**
 * `corral images build <context-dir> [-f Dockerfile] --tag name:tag`: a Dockerfile build through the
 * server's images API; `corral images build <python|busybox>` (when no such directory exists): an
 * offline preset built and imported into the local runtime's store.
 */
export function registerImagesBuild(images: Command): void {
  images
    .command('build <context>')
    .summary('Build an image from a Dockerfile context on the server, or an offline preset (python, busybox) into the local store')
    .description(
      'Build an image. A directory is a build context: its Dockerfile is built by the server (images API), the log streams to stderr and the ' +
        'image reference is printed. The words python or busybox (when no such directory exists) build an offline preset into the local ' +
        "runtime's store: python (Debian bookworm + python3 3.11, tagged python:3.11-slim) or busybox",
    )
    .option('-f, --file <path>', 'the Dockerfile, relative to the current directory (default: <context>/Dockerfile)')
    .option('--tag <ref>', 'context builds: name:tag of the image (required); presets: the name to give it (default python:3.11-slim / busybox:latest)')
    .option('--team <id>', "context builds: build as this team's image")
    .option('-q, --quiet', 'context builds: do not stream the build log')
    .option('--runtime <driver>', 'presets: docker or oci (default: CORRAL_RUNTIME)')
    .option('--data-dir <dir>', "presets: the server's data dir, for oci (default: CORRAL_DATA_DIR)")
    .action(
      lazy<[string, ImagesBuildOptions]>(async () => {
        const { existsSync, statSync } = await import('node:fs');
        return async (context, options, globals) => {
          const isDirectory = existsSync(context) && statSync(context).isDirectory();
          if (!isDirectory && (context === 'python' || context === 'busybox')) {
            if (options.file !== undefined || options.team !== undefined) throw new Error(`-f and --team apply to context builds; "${context}" is an offline preset (no directory ${context} here)`);
            return (await import('./build-preset.js')).buildPreset(context, options, globals);
          }
          if (!isDirectory) throw new Error(`no directory ${context}: give a build context directory (with a Dockerfile), or python or busybox for an offline preset`);
          if (options.runtime !== undefined || options.dataDir !== undefined) throw new Error('--runtime and --data-dir apply to the offline presets; a context build runs on the server');
          return (await import('./build-context.js')).buildContext(context, options, globals);
        };
      }),
    );
}

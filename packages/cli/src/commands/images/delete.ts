import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import { parseImageRef } from './image-ref.js';

/** `corral images delete name:tag` (or `team-<id>/name:tag`, or `--team <id>`): deletes an image of the server's images API. */
export function registerImagesDelete(images: Command): void {
  images
    .command('delete <image>')
    .description('Delete one of your images on the server: name:tag, or team-<id>/name:tag (as `corral images list` shows) for a team image')
    .option('--team <id>', "the image is this team's")
    .action(
      run(async (ref: string, options: { team?: string }, globals: GlobalOptions) => {
        const { name, tag, teamId } = parseImageRef(ref, options.team);
        const { clientFor } = await import('../../sdk-client.js');
        const result = await clientFor(globals).images.delete(name, tag, teamId !== undefined ? { teamId } : {});
        if (globals.output === 'json') printResult('json', result, [], []);
        else process.stdout.write(`${result.message}\n`);
      }),
    );
}

import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import { parseImageRef } from './image-ref.js';

/** The flags of a context build. */
export interface ContextBuildOptions {
  file?: string;
  tag?: string;
  team?: string;
  quiet?: boolean;
}

/**
 * `corral images build <dir> [-f Dockerfile] --tag name:tag`: packs the context, builds it through
 * the server (the SDK's `images.build`), streams the log to stderr and prints the image reference
 * (with `--output json`: `{"image": …}`).
 */
export async function buildContext(dir: string, options: ContextBuildOptions, globals: GlobalOptions): Promise<void> {
  if (options.tag === undefined) throw new Error('give the image a name with --tag name:tag (e.g. --tag myapp:v1)');
  const { name, tag, teamId } = parseImageRef(options.tag, options.team);
  const client = clientFor(globals);
  const image = await client.images.build({
    context: dir,
    ...(options.file !== undefined ? { dockerfile: options.file } : {}),
    name,
    tag,
    ...(teamId !== undefined ? { teamId } : {}),
    ...(options.quiet ? {} : { onLog: (text: string) => process.stderr.write(text) }),
  });
  process.stdout.write(globals.output === 'json' ? `${JSON.stringify({ image }, null, 2)}\n` : `${image}\n`);
}

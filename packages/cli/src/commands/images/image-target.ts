import { type RuntimeImages, createRuntimeImages, loadConfig } from '@corral/server';

/** Options shared by the `corral images` verbs. */
export interface ImageTargetOptions {
  runtime?: string;
  dataDir?: string;
}

/** The image store of the runtime a command works on: `--runtime`/`--data-dir`, else the server's settings. */
export async function imageTarget(options: ImageTargetOptions): Promise<RuntimeImages> {
  const env = { ...process.env };
  if (options.runtime) env.CORRAL_RUNTIME = options.runtime;
  if (options.dataDir) env.CORRAL_DATA_DIR = options.dataDir;
  return createRuntimeImages(loadConfig({ env }));
}

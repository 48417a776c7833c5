import { type ImageTarget, loadConfig, ociStateDir } from '@corral/server';

/** Options shared by the `corral images` verbs. */
export interface ImageTargetOptions {
  runtime?: string;
  dataDir?: string;
}

/** The runtime whose images a command works on: `--runtime`/`--data-dir`, else the server's settings. */
export function imageTarget(options: ImageTargetOptions): ImageTarget {
  const env = { ...process.env };
  if (options.runtime) env.CORRAL_RUNTIME = options.runtime;
  if (options.dataDir) env.CORRAL_DATA_DIR = options.dataDir;
  const config = loadConfig({ env });
  if (config.runtime === 'oci') return { runtime: 'oci', stateDir: ociStateDir(config.dataDir) };
  return { runtime: 'docker' };
}

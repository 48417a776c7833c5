import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RegistryCredentials } from '../runtime/registry/registry-client.js';
import { DEFAULT_PATH } from './recipes.js';
import { runTool } from './tools.js';
import { pathExists } from '../util/path-exists.js';

/** Image config written by {@link buildOciLayout}. */
export interface OciConfigOptions {
  /** `KEY=value` environment; defaults to a standard PATH. */
  readonly env?: readonly string[];
  /** Default command; defaults to `["sh"]`. */
  readonly cmd?: readonly string[];
  readonly labels?: Readonly<Record<string, string>>;
}


/**
 * Builds (or replaces) the image `ref` in the OCI layout `dir` from a rootfs tarball, using umoci:
 * one layer holding the tarball verbatim, plus the given config. Returns `dir:ref`, the image's
 * skopeo/umoci name without transport.
 */
export async function buildOciLayout(rootfsTar: string, dir: string, ref: string, options: OciConfigOptions = {}): Promise<string> {
  const image = `${dir}:${ref}`;
  if (!(await pathExists(join(dir, 'index.json')))) {
    await runTool('umoci', ['init', '--layout', dir]);
  } else {
    const { stdout } = await runTool('umoci', ['ls', '--layout', dir]);
    if (stdout.split('\n').some((line) => line.trim() === ref)) await runTool('umoci', ['rm', '--image', image]);
  }
  await runTool('umoci', ['new', '--image', image]);
  await runTool('umoci', ['raw', 'add-layer', '--image', image, '--history.created_by', 'corral buildOciLayout', rootfsTar]);
  const config = ['config', '--image', image];
  for (const entry of options.env ?? [`PATH=${DEFAULT_PATH}`]) config.push('--config.env', entry);
  for (const arg of options.cmd ?? ['sh']) config.push('--config.cmd', arg);
  for (const [key, value] of Object.entries(options.labels ?? {})) config.push('--config.label', `${key}=${value}`);
  await runTool('umoci', config);
  await runTool('umoci', ['gc', '--layout', dir]);
  return image;
}

/** Options for {@link pushToRegistry}. */
export interface PushOptions {
  /** Tag inside the layout; may be omitted when the layout holds one image. */
  readonly ref?: string;
  /** Registry credentials; passed to skopeo in a private auth file, never on its command line. */
  readonly credentials?: RegistryCredentials;
  /** Require HTTPS with verified certificates (default false: local registries speak plain HTTP). */
  readonly tlsVerify?: boolean;
  /** Manifest format; default `v2s2` (Docker schema 2), which every Docker engine pulls. */
  readonly format?: 'oci' | 'v2s2';
}

/**
 * Pushes an image of an OCI layout to a registry with `skopeo copy`, e.g.
 * `pushToRegistry(dir, 'docker://127.0.0.1:5000/corral/busybox:latest')`.
 */
export async function pushToRegistry(layoutDir: string, destination: string, options: PushOptions = {}): Promise<void> {
  const dest = destination.startsWith('docker://') ? destination : `docker://${destination}`;
  const source = `oci:${layoutDir}${options.ref !== undefined ? `:${options.ref}` : ''}`;
  const args = ['--insecure-policy', 'copy', '--quiet', `--dest-tls-verify=${options.tlsVerify === true ? 'true' : 'false'}`];
  args.push('--format', options.format ?? 'v2s2');
  let scratch: string | undefined;
  try {
    if (options.credentials) {
      scratch = await mkdtemp(join(tmpdir(), 'corral-auth-'));
      const authFile = join(scratch, 'auth.json');
      const host = dest.slice('docker://'.length).split('/')[0] ?? '';
      const auth = Buffer.from(`${options.credentials.username}:${options.credentials.password}`).toString('base64');
      await writeFile(authFile, JSON.stringify({ auths: { [host]: { auth } } }), { mode: 0o600 });
      await chmod(authFile, 0o600);
      args.push('--dest-authfile', authFile);
    } else {
      args.push('--dest-no-creds');
    }
    args.push(source, dest);
    await runTool('skopeo', args);
  } finally {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  }
}

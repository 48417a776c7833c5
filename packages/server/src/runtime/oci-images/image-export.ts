import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { normalizeRegistryHost, parseImageRef } from '../registry/image-ref.js';
import { runTool } from '../run-tool.js';
import type { ImageRecord, ImageStore } from './image-store.js';
import { packOverlayLayer } from './layer-pack.js';
import { writeImageLayout } from './oci-layout.js';

/** Where {@link exportImage} copies an image. */
export type ImageExportTarget =
  /** A registry repository and tag (`host[:port]/repository:tag`), with credentials when it wants them. */
  | { kind: 'registry'; reference: string; credentials?: { username: string; password: string } }
  /** A Docker Engine's image list, under `reference`; `daemonHost` when not the default socket (DOCKER_HOST). */
  | { kind: 'docker-daemon'; reference: string; daemonHost?: string };

/** How {@link exportImage} runs. */
export interface ImageExportOptions {
  /** A directory for the layout it writes (removed afterwards). */
  workDir: string;
  /** Registries (`host[:port]`) reached over plain HTTP or unverified TLS (`CORRAL_REGISTRY_INSECURE`). */
  insecureRegistries: readonly string[];
  /** skopeo's signature policy file (default: one accepting anything, written in `workDir`). */
  policyFile?: string;
  /** gzip the layers in the layout (default true; skopeo sends them as they are). */
  gzip?: boolean;
  /** Deadline of the copy (default 30 minutes). */
  timeoutMs?: number;
}

/** What a layout written by {@link writeStoreLayout} holds. */
export interface StoreLayout {
  /** `sha256:<hex>` of its manifest. */
  manifestDigest: string;
  /** Bytes of its layer blobs. */
  layerBytes: number;
}

/**
 * Writes `record`, an image of `store`, as an OCI image layout in `dir` (tagged `latest`): each
 * unpacked layer archived again by {@link packOverlayLayer} (overlayfs whiteouts and opaque
 * directories as OCI `.wh.` entries, numeric owners), gzipped unless `gzip` is false, and a config
 * holding the image's env, entrypoint, command, working directory and user.
 */
export async function writeStoreLayout(store: ImageStore, record: ImageRecord, dir: string, options: { gzip?: boolean } = {}): Promise<StoreLayout> {
  const archive = async (hex: string, out: string): Promise<void> => {
    await packOverlayLayer(store.layerDir(hex), out);
  };
  const layout = await writeImageLayout(record, dir, archive, { gzip: options.gzip ?? true });
  return { manifestDigest: layout.manifestDigest, layerBytes: layout.layers.reduce((sum, l) => sum + l.size, 0) };
}

/**
 * Copies `record`, an image of `store`, to a registry or a Docker Engine with `skopeo copy`, from
 * an OCI layout written by {@link writeStoreLayout}. Registry credentials go in an auth file only
 * this process reads (never on a command line); TLS is verified except for `insecureRegistries`.
 * Rejects with skopeo's error.
 */
export async function exportImage(store: ImageStore, record: ImageRecord, target: ImageExportTarget, options: ImageExportOptions): Promise<StoreLayout> {
  await mkdir(options.workDir, { recursive: true, mode: 0o700 });
  const work = await mkdtemp(join(options.workDir, 'export-'));
  try {
    const layout = join(work, 'layout');
    const written = await writeStoreLayout(store, record, layout, options.gzip === undefined ? {} : { gzip: options.gzip });
    const policy = options.policyFile ?? join(work, 'policy.json');
    if (options.policyFile === undefined) await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const args = ['copy', '--quiet', '--policy', policy];
    let destination: string;
    if (target.kind === 'registry') {
      const ref = parseImageRef(target.reference);
      destination = `docker://${ref.canonical}`;
      args.push(...(await registryAccessArgs('dest', ref.registry, target.credentials, options.insecureRegistries, work)));
    } else {
      destination = `docker-daemon:${parseImageRef(target.reference).canonical}`;
      if (target.daemonHost !== undefined) args.push('--dest-daemon-host', target.daemonHost);
    }
    args.push(`oci:${layout}:latest`, destination);
    await runTool('skopeo', args, { timeoutMs: options.timeoutMs ?? 30 * 60_000 });
    return written;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Deletes `reference` (`host[:port]/repository:tag`) from its registry with `skopeo delete`
 * (the registry must allow deletes; many answer 405 Method Not Allowed). Rejects with skopeo's error.
 */
export async function deleteFromRegistry(
  reference: string,
  options: { workDir: string; insecureRegistries: readonly string[]; credentials?: { username: string; password: string }; timeoutMs?: number },
): Promise<void> {
  await mkdir(options.workDir, { recursive: true, mode: 0o700 });
  const work = await mkdtemp(join(options.workDir, 'delete-'));
  try {
    const ref = parseImageRef(reference);
    const access = await registryAccessArgs('', ref.registry, options.credentials, options.insecureRegistries, work);
    await runTool('skopeo', ['delete', ...access, `docker://${ref.canonical}`], { timeoutMs: options.timeoutMs ?? 120_000 });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * skopeo's options for reaching `registry`: an auth file (mode 0600 in `dir`) with the credentials,
 * and no TLS verification for an insecure registry. `side` is `dest`, `src` or '' (skopeo delete).
 */
async function registryAccessArgs(
  side: 'dest' | 'src' | '',
  registry: string,
  credentials: { username: string; password: string } | undefined,
  insecureRegistries: readonly string[],
  dir: string,
): Promise<string[]> {
  const flag = (name: string): string => (side === '' ? `--${name}` : `--${side}-${name}`);
  const args: string[] = [];
  const insecure = insecureRegistries.map((r) => normalizeRegistryHost(r)).includes(normalizeRegistryHost(registry));
  if (insecure) args.push(`${flag('tls-verify')}=false`);
  if (credentials !== undefined) {
    const authFile = join(dir, 'auth.json');
    const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
    await writeFile(authFile, JSON.stringify({ auths: { [registry]: { auth } } }), { mode: 0o600 });
    await chmod(authFile, 0o600);
    args.push(side === '' ? '--authfile' : flag('authfile'), authFile);
  } else {
    // No credentials of the host's (~/.docker/config.json, containers' auth.json) go with the copy.
    args.push(side === '' ? '--no-creds' : flag('no-creds'));
  }
  return args;
}

import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { DEFAULT_PATH } from '../container-policy.js';
import { detectArchiveFormat } from '../image-archive.js';
import type { ArchiveFormat } from '../image-archive.js';
import { parseImageRef } from '../registry/image-ref.js';
import type { RegistryCredentials } from '../registry/registry-client.js';
import { runTool } from '../run-tool.js';
import { readProgress } from './docker-progress.js';
import type { ProgressMessage } from './docker-progress.js';

/** Options shared by the functions that talk to the Docker engine. */
export interface DockerOptions {
  /** Engine client; defaults to `new Docker()` (honours `DOCKER_HOST`, else /var/run/docker.sock). */
  readonly docker?: Docker;
}

/** Image config applied by {@link importRootfsToDocker}. */
export interface ImportRootfsOptions extends DockerOptions {
  /** `KEY=value` environment; defaults to a standard PATH. */
  readonly env?: readonly string[];
  /** Default command; defaults to `["sh"]`. */
  readonly cmd?: readonly string[];
  /** Image labels. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Working directory. */
  readonly workdir?: string;
}

/** An image in the local engine. */
export interface LocalImage {
  /** Image ID (`sha256:…`). */
  readonly id: string;
  /** `name:tag` references pointing at it (empty when untagged). */
  readonly tags: readonly string[];
  readonly sizeBytes: number;
  /** Creation time, ISO 8601. */
  readonly created: string;
  readonly labels: Readonly<Record<string, string>>;
}

function client(options: DockerOptions): Docker {
  return options.docker ?? new Docker();
}

/** Repository (as written) and tag of `tag`, as the engine's import and tag calls take them. */
function repoAndTag(reference: string): { repo: string; tag: string } {
  const ref = parseImageRef(reference);
  return { repo: ref.name, tag: ref.tag };
}

/**
 * Imports a rootfs tarball as a single-layer image (`docker import` equivalent) and tags it.
 * Returns the image ID.
 */
export async function importRootfsToDocker(rootfsTar: string, tag: string, options: ImportRootfsOptions = {}): Promise<string> {
  const docker = client(options);
  const { repo, tag: version } = repoAndTag(tag);
  const env = options.env ?? [`PATH=${DEFAULT_PATH}`];
  const changes = [...env.map((entry) => `ENV ${entry}`), `CMD ${JSON.stringify(options.cmd ?? ['sh'])}`];
  for (const [key, value] of Object.entries(options.labels ?? {})) changes.push(`LABEL ${JSON.stringify(key)}=${JSON.stringify(value)}`);
  if (options.workdir !== undefined) changes.push(`WORKDIR ${options.workdir}`);
  const stream = await docker.importImage(createReadStream(rootfsTar), { repo, tag: version, changes });
  await readProgress(stream);
  const info = await docker.getImage(tag).inspect();
  return info.Id;
}

function loadedReferences(messages: readonly ProgressMessage[]): string[] {
  const refs: string[] = [];
  for (const message of messages) {
    const text = message.stream ?? message.status ?? '';
    const match = /Loaded image(?: ID)?: (\S+)/.exec(text);
    if (match?.[1] !== undefined) refs.push(match[1]);
  }
  return refs;
}

/** Options for {@link importOciArchive}. */
export interface ImportArchiveOptions extends DockerOptions {
  /** Reference inside an OCI layout holding several images (its `org.opencontainers.image.ref.name`). */
  readonly ref?: string;
}

/**
 * Loads an image archive into the engine (`docker load` equivalent): a `docker save` tarball as is,
 * an OCI layout (tarball or directory) after converting it with skopeo (Docker 20.10 cannot load
 * OCI layouts). When `tag` is given the loaded image is tagged with it. Returns the image ID and the
 * references it was loaded under.
 */
export async function importOciArchive(
  path: string,
  tag?: string,
  options: ImportArchiveOptions = {},
): Promise<{ id: string; references: string[]; format: ArchiveFormat }> {
  const docker = client(options);
  const format = await detectArchiveFormat(path);
  let archive = path;
  let scratch: string | undefined;
  try {
    if (format !== 'docker-archive') {
      scratch = await mkdtemp(join(tmpdir(), 'corral-oci-'));
      archive = join(scratch, 'image.tar');
      const source = `${format === 'oci-dir' ? 'oci' : 'oci-archive'}:${path}${options.ref !== undefined ? `:${options.ref}` : ''}`;
      const destination = `docker-archive:${archive}${tag !== undefined ? `:${tag}` : ''}`;
      await runTool('skopeo', ['--insecure-policy', 'copy', '--quiet', source, destination]);
    }
    const stream = await docker.loadImage(createReadStream(archive), { quiet: true });
    const references = loadedReferences(await readProgress(stream));
    const first = tag ?? references[0];
    if (first === undefined) throw new Error(`docker load of ${path} reported no image`);
    if (tag !== undefined && !references.includes(tag)) {
      const source = references[0];
      if (source === undefined) throw new Error(`docker load of ${path} reported no image to tag as ${tag}`);
      const { repo, tag: version } = repoAndTag(tag);
      await docker.getImage(source).tag({ repo, tag: version });
    }
    const info = await docker.getImage(first).inspect();
    return { id: info.Id, references, format };
  } finally {
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  }
}

/** Lists the images in the local engine. */
export async function listLocalImages(options: DockerOptions = {}): Promise<LocalImage[]> {
  const images = await client(options).listImages();
  return images.map((image) => ({
    id: image.Id,
    tags: (image.RepoTags ?? []).filter((ref) => ref !== '<none>:<none>'),
    sizeBytes: image.Size,
    created: new Date(image.Created * 1000).toISOString(),
    labels: image.Labels ?? {},
  }));
}

/** Options for {@link pullImage}. */
export interface PullOptions extends DockerOptions {
  readonly credentials?: RegistryCredentials;
}

/** Pulls an image through the engine; rejects with the engine's reason (e.g. `unauthorized`). */
export async function pullImage(ref: string, options: PullOptions = {}): Promise<void> {
  const docker = client(options);
  const parsed = parseImageRef(ref);
  const pullOptions: Record<string, string> =
    parsed.digest !== undefined ? { fromImage: `${parsed.name}@${parsed.digest}` } : { fromImage: parsed.name, tag: parsed.tag };
  // Credentials travel in the X-Registry-Auth header, never in the query string.
  const stream = options.credentials
    ? await docker.createImage({ ...options.credentials, serveraddress: parsed.registry }, pullOptions)
    : await docker.createImage(pullOptions);
  await readProgress(stream);
}

import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdtemp, readFile, readdir, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import dockerignoreModule from '@balena/dockerignore';
import { pack } from 'tar-stream';
import { BuildContextError } from './errors.js';

// The package is CommonJS (`module.exports = factory`) with types that declare a default export.
const dockerignore = ((dockerignoreModule as unknown as { default?: typeof dockerignoreModule.default }).default ??
  (dockerignoreModule as unknown as typeof dockerignoreModule.default));

/** Where a Dockerfile outside the context directory goes in the packed context. */
export const PACKED_DOCKERFILE_PATH = '.__corral_dockerfile__';

/** A packed build context: a gzip'd tar file on disk, and the Dockerfile's path inside it. */
export interface PackedContext {
  /** The tarball (`.tar.gz`); {@link PackedContext.dispose} removes it. */
  file: string;
  bytes: number;
  /** The Dockerfile's path relative to the context root (what `dockerfile_path` says). */
  dockerfilePath: string;
  /** Files, directories and links packed. */
  entries: number;
  dispose(): Promise<void>;
}

async function existingDirectory(dir: string): Promise<void> {
  const info = await stat(dir).catch(() => undefined);
  if (info === undefined) throw new BuildContextError(`The build context ${dir} does not exist. Pass the directory that holds your Dockerfile and the files it copies.`);
  if (!info.isDirectory()) throw new BuildContextError(`The build context ${dir} is not a directory. Pass the directory that holds your Dockerfile and the files it copies.`);
}

/**
 * Packs a build context directory as a gzip'd tar in a temporary file, as `docker build` sends it:
 * paths relative to the directory, `.dockerignore` (Docker's rules) honoured, except that the
 * Dockerfile and `.dockerignore` always go. A Dockerfile outside the directory (`dockerfile`
 * relative to the working directory, or absolute) is added as {@link PACKED_DOCKERFILE_PATH}.
 * Regular files, directories and symbolic links (as links) are packed; sockets, FIFOs and devices
 * are skipped. Modes are kept; owners are not (the server extracts as an unprivileged user).
 */
export async function packBuildContext(contextDir: string, dockerfile?: string): Promise<PackedContext> {
  const root = resolve(contextDir);
  await existingDirectory(root);
  const dockerfileAbs = dockerfile === undefined ? join(root, 'Dockerfile') : resolve(dockerfile);
  const dockerfileInfo = await stat(dockerfileAbs).catch(() => undefined);
  if (dockerfileInfo === undefined || !dockerfileInfo.isFile()) {
    throw new BuildContextError(
      dockerfile === undefined
        ? `There is no Dockerfile in ${root}. Add one, or name it with -f/--file (dockerfile option).`
        : `The Dockerfile ${dockerfileAbs} does not exist or is not a file. Check the -f/--file path (relative to the current directory).`,
    );
  }
  const inside = relative(root, dockerfileAbs);
  const dockerfileInContext = !inside.startsWith('..') && !inside.startsWith(sep) && inside !== '';
  const dockerfilePath = dockerfileInContext ? inside.split(sep).join('/') : PACKED_DOCKERFILE_PATH;

  const ignoreText = await readFile(join(root, '.dockerignore'), 'utf8').catch(() => '');
  const rules = dockerignore({ ignorecase: false }).add(ignoreText.split(/\r?\n/));
  const alwaysKept = new Set(['.dockerignore', ...(dockerfileInContext ? [dockerfilePath] : [])]);

  const scratch = await mkdtemp(join(tmpdir(), 'corral-context-'));
  const file = join(scratch, 'context.tar.gz');
  const dispose = (): Promise<void> => rm(scratch, { recursive: true, force: true });
  const tar = pack();
  const output = pipeline(tar, createGzip(), createWriteStream(file));
  let entries = 0;

  const addFile = async (name: string, path: string, mode: number, size: number, mtime: Date): Promise<void> => {
    const entry = tar.entry({ name, type: 'file', mode, size, mtime });
    await pipeline(createReadStream(path), entry);
  };

  const walk = async (dir: string): Promise<void> => {
    const children = (await readdir(dir)).sort();
    for (const child of children) {
      const path = join(dir, child);
      const name = relative(root, path).split(sep).join('/');
      const info = await lstat(path);
      // A directory that is ignored is still walked when a later `!rule` may keep something in it.
      const ignored = !alwaysKept.has(name) && rules.ignores(name);
      if (info.isDirectory()) {
        if (!ignored) {
          tar.entry({ name: `${name}/`, type: 'directory', mode: info.mode & 0o7777, mtime: info.mtime });
          entries++;
        }
        if (!ignored || ignoreText.includes('!')) await walk(path);
      } else if (ignored) {
        continue;
      } else if (info.isFile()) {
        await addFile(name, path, info.mode & 0o7777, info.size, info.mtime);
        entries++;
      } else if (info.isSymbolicLink()) {
        tar.entry({ name, type: 'symlink', linkname: await readlink(path), mode: 0o777, mtime: info.mtime });
        entries++;
      }
    }
  };

  try {
    await walk(root);
    if (!dockerfileInContext) {
      await addFile(PACKED_DOCKERFILE_PATH, dockerfileAbs, 0o644, dockerfileInfo.size, dockerfileInfo.mtime);
      entries++;
    }
    tar.finalize();
    await output;
  } catch (error) {
    tar.destroy();
    await output.catch(() => undefined);
    await dispose();
    if (error instanceof BuildContextError) throw error;
    throw new BuildContextError(`Could not pack the build context ${root}: ${(error as Error).message}. Check that every file in it is readable, or list the others in .dockerignore.`, {
      cause: error,
    });
  }
  return { file, bytes: (await stat(file)).size, dockerfilePath, entries, dispose };
}

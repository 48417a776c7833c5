/**
 * Entry point the repository scripts call (`node --conditions=development --import tsx
 * packages/server/src/images/cli.ts <command>`). Commands:
 *
 *   ensure-defaults [--force] [--try-pull]   build/import python:3.11-slim and busybox:latest
 *   build-rootfs python|busybox [OUT.tar]    build (cached) a rootfs tarball, print its path
 *   push python|busybox DEST                 push to a registry (credentials: $CORRAL_REGISTRY_CREDS=user:password)
 *   import-archive PATH [TAG]                load a docker-save or OCI archive into the engine
 *   list                                     list local images
 */
import { ensureDefaultImages } from './defaults.js';
import { importOciArchive, listLocalImages } from './docker-images.js';
import type { RegistryCredentials } from './docker-images.js';
import { pushRootfsImage } from './push-kind.js';
import type { RootfsKind } from './recipes.js';
import { buildRootfs } from './rootfs.js';

const log = (message: string): void => console.error(`images: ${message}`);

function kindArg(value: string | undefined): RootfsKind {
  if (value === 'python' || value === 'busybox') return value;
  throw new Error(`expected a rootfs kind (python or busybox), got ${value ?? 'nothing'}`);
}

function credentialsFromEnv(): RegistryCredentials | undefined {
  const raw = process.env['CORRAL_REGISTRY_CREDS'];
  if (raw === undefined || raw === '') return undefined;
  const colon = raw.indexOf(':');
  if (colon <= 0) throw new Error('CORRAL_REGISTRY_CREDS must be user:password');
  return { username: raw.slice(0, colon), password: raw.slice(colon + 1) };
}

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'ensure-defaults': {
      const results = await ensureDefaultImages({ force: rest.includes('--force'), tryPull: rest.includes('--try-pull'), log });
      for (const result of results) console.log(`${result.tag}\t${result.action}\t${result.ms} ms${result.key ? `\t${result.key}` : ''}`);
      return;
    }
    case 'build-rootfs': {
      const built = await buildRootfs(kindArg(rest[0]), rest[1], { log, force: rest.includes('--force') });
      console.log(built.path);
      return;
    }
    case 'push': {
      const destination = rest[1];
      if (destination === undefined) throw new Error('usage: push python|busybox DEST');
      const credentials = credentialsFromEnv();
      const started = Date.now();
      await pushRootfsImage(kindArg(rest[0]), destination, { log, ...(credentials ? { credentials } : {}) });
      log(`pushed ${destination} in ${Date.now() - started} ms`);
      return;
    }
    case 'import-archive': {
      const path = rest[0];
      if (path === undefined) throw new Error('usage: import-archive PATH [TAG]');
      const result = await importOciArchive(path, rest[1]);
      console.log(`${result.id}\t${result.references.join(',')}\t${result.format}`);
      return;
    }
    case 'list': {
      for (const image of await listLocalImages()) {
        console.log(`${image.id.slice(7, 19)}\t${(image.sizeBytes / 1e6).toFixed(1)} MB\t${image.tags.join(' ') || '<untagged>'}`);
      }
      return;
    }
    default:
      throw new Error(`unknown command ${command ?? '(none)'}; see the header of packages/server/src/images/cli.ts`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  console.error(`images: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});

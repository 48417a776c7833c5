import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * The content of a secret file (mode 0600) in a data dir, made once by `make` when missing.
 * Servers sharing a data dir (replicas) may start at once: a new secret is written whole to a
 * file of its own, then hard-linked into place, which fails when another server published one
 * first; everyone then reads the one published secret (writing in place let a second server read
 * it empty, or crash on the file's existence). `created` says whether this call published it.
 */
export function loadOrCreateSecretFile(file: string, make: () => string): { content: string; created: boolean } {
  try {
    const content = readFileSync(file, 'utf8');
    chmodSync(file, 0o600);
    return { content, created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const draft = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
  writeFileSync(draft, make(), { mode: 0o600 });
  let created = true;
  try {
    linkSync(draft, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    created = false; // Another server published its secret first: use that one.
  } finally {
    rmSync(draft, { force: true });
  }
  return { content: readFileSync(file, 'utf8'), created };
}

import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';

const { utils } = ssh2;

/**
 * The SSH host key of a data dir (`ssh_host_ed25519_key`): generated once, then reused so
 * clients' known_hosts stay valid. Servers sharing a data dir (replicas) may start at once: a
 * new key is written whole to a file of its own and then hard-linked into place, which fails
 * when another server published one first; everyone then reads the one published key. (Writing
 * it in place let a second server read the file while it was still empty.)
 */
export function loadOrCreateHostKey(dataDir: string): string {
  const file = join(dataDir, 'ssh_host_ed25519_key');
  try {
    return readFileSync(file, 'utf8');
  } catch {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const pair = utils.generateKeyPairSync('ed25519');
    const draft = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
    writeFileSync(draft, pair.private, { mode: 0o600 });
    try {
      linkSync(draft, file);
      writeFileSync(`${file}.pub`, `${pair.public}\n`, { mode: 0o644 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // Another server published its key first: use that one.
    } finally {
      rmSync(draft, { force: true });
    }
    return readFileSync(file, 'utf8');
  }
}

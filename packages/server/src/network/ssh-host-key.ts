import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { loadOrCreateSecretFile } from '../util/secret-file.js';

const { utils } = ssh2;

/**
 * The SSH host key of a data dir (`ssh_host_ed25519_key`): generated once, then reused so
 * clients' known_hosts stay valid; servers starting at once on one data dir all get the one key
 * (`loadOrCreateSecretFile`). The server that made it writes the public half beside it.
 */
export function loadOrCreateHostKey(dataDir: string): string {
  const file = join(dataDir, 'ssh_host_ed25519_key');
  let publicKey = '';
  const { content, created } = loadOrCreateSecretFile(file, () => {
    const pair = utils.generateKeyPairSync('ed25519');
    publicKey = pair.public;
    return pair.private;
  });
  if (created) writeFileSync(`${file}.pub`, `${publicKey}\n`, { mode: 0o644 });
  return content;
}

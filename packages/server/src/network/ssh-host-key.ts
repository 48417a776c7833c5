import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { loadOrCreateSecretFile } from '../util/secret-file.js';

const { utils } = ssh2;

/** How many keys {@link generateHostKey} makes at most before it gives up. */
const KEY_ATTEMPTS = 20;

/**
 * A new ed25519 host key pair (OpenSSH private key, public key line) that the SSH server can
 * load: ssh2's `generateKeyPairSync('ed25519')` writes about 1 in 500 keys in a form its own
 * `parseKey` refuses ("Malformed OpenSSH private key"), so such a key is made again.
 */
export function generateHostKey(): { private: string; public: string } {
  for (let attempt = 0; attempt < KEY_ATTEMPTS; attempt += 1) {
    const pair = utils.generateKeyPairSync('ed25519');
    if (!(utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new Error(`ssh2 made ${KEY_ATTEMPTS} ed25519 host keys in a row that it cannot parse`);
}

/**
 * The SSH host key of a data dir (`ssh_host_ed25519_key`): generated once, then reused so
 * clients' known_hosts stay valid; servers starting at once on one data dir all get the one key
 * (`loadOrCreateSecretFile`). The server that made it writes the public half beside it.
 */
export function loadOrCreateHostKey(dataDir: string): string {
  const file = join(dataDir, 'ssh_host_ed25519_key');
  let publicKey = '';
  const { content, created } = loadOrCreateSecretFile(file, () => {
    const pair = generateHostKey();
    publicKey = pair.public;
    return pair.private;
  });
  if (created) writeFileSync(`${file}.pub`, `${publicKey}\n`, { mode: 0o644 });
  return content;
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import ssh2 from 'ssh2';
import { generateHostKey } from './ssh-host-key.js';

test('every generated host key is one the SSH server can load (ssh2 writes a few ed25519 keys its own parser refuses)', () => {
  // About 1 in 500 of ssh2's generateKeyPairSync('ed25519') keys fail its parseKey: 3000 keys
  // include one with a probability above 99 %.
  for (let i = 0; i < 3000; i += 1) {
    const key = generateHostKey();
    assert.equal(ssh2.utils.parseKey(key.private) instanceof Error, false, `key ${i} does not parse`);
  }
});

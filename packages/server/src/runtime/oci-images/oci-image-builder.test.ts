import assert from 'node:assert/strict';
import { chmodSync, chownSync, lchownSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { lastStep, unshiftOwners } from './oci-image-builder.js';

describe('lastStep', () => {
  it('is the last STEP line of buildah output, with its stage', () => {
    assert.equal(lastStep('[1/2] STEP 1/3: FROM busybox AS b\nok\n[1/2] STEP 2/3: RUN make\nerror: x\n'), '[1/2] STEP 2/3: RUN make');
    assert.equal(lastStep('STEP 1/1: RUN false\n'), 'STEP 1/1: RUN false');
    assert.equal(lastStep('no steps here'), null);
  });
});

describe('unshiftOwners', { skip: process.getuid?.() !== 0 ? 'needs root (chown)' : false }, () => {
  it('gives files in the build range their build ids back, keeps others and set-id bits, and does not follow links', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-unshift-'));
    try {
      const host = { hostId: 0x7100_0000, size: 65_536 };
      mkdirSync(join(dir, 'app'));
      writeFileSync(join(dir, 'app', 'run'), 'x');
      writeFileSync(join(dir, 'outside'), 'x');
      writeFileSync(join(dir, 'target'), 'x');
      symlinkSync(join(dir, 'target'), join(dir, 'app', 'link'));
      chownSync(join(dir, 'app'), host.hostId, host.hostId);
      chownSync(join(dir, 'app', 'run'), host.hostId + 1000, host.hostId + 1000);
      chmodSync(join(dir, 'app', 'run'), 0o4755);
      lchownSync(join(dir, 'app', 'link'), host.hostId + 7, host.hostId + 7);
      chownSync(join(dir, 'outside'), 0x7200_0000, 5);
      chownSync(join(dir, 'target'), 0x7200_0000, 0x7200_0000);
      assert.equal(await unshiftOwners(dir, host), 3);
      const ids = (path: string): [number, number] => {
        const s = lstatSync(join(dir, path));
        return [s.uid, s.gid];
      };
      assert.deepEqual(ids('app'), [0, 0]);
      assert.deepEqual(ids('app/run'), [1000, 1000]);
      assert.equal(lstatSync(join(dir, 'app', 'run')).mode & 0o7777, 0o4755);
      assert.deepEqual(ids('app/link'), [7, 7]);
      assert.deepEqual(ids('target'), [0x7200_0000, 0x7200_0000], 'the link target is not touched');
      assert.deepEqual(ids('outside'), [0x7200_0000, 5]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

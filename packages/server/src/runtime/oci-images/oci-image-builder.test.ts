import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lastStep } from './oci-image-builder.js';

describe('lastStep', () => {
  it('is the last STEP line of buildah output, with its stage', () => {
    assert.equal(lastStep('[1/2] STEP 1/3: FROM busybox AS b\nok\n[1/2] STEP 2/3: RUN make\nerror: x\n'), '[1/2] STEP 2/3: RUN make');
    assert.equal(lastStep('STEP 1/1: RUN false\n'), 'STEP 1/1: RUN false');
    assert.equal(lastStep('no steps here'), null);
  });
});

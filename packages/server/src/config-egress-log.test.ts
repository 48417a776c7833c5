import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeSettings, loadConfig } from './config.js';

describe('config: CORRAL_EGRESS_NFLOG_GROUP', () => {
  it('defaults to 1637, takes 0-65535 and names itself when invalid', () => {
    assert.equal(loadConfig({ env: {} }).egressNflogGroup, 1637);
    assert.equal(loadConfig({ env: { CORRAL_EGRESS_NFLOG_GROUP: '0' } }).egressNflogGroup, 0);
    assert.equal(loadConfig({ env: { CORRAL_EGRESS_NFLOG_GROUP: '65535' } }).egressNflogGroup, 65535);
    for (const raw of ['65536', '-1', 'x', '1.5']) {
      assert.throws(() => loadConfig({ env: { CORRAL_EGRESS_NFLOG_GROUP: raw } }), /CORRAL_EGRESS_NFLOG_GROUP must be an integer from 0 to 65535/);
    }
    assert.match(describeSettings(), /CORRAL_EGRESS_NFLOG_GROUP .*NFLOG group.*\(default: 1637\)/);
  });
});

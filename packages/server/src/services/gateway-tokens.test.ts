import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayTokens } from './gateway-tokens.js';

describe('GatewayTokens', () => {
  it('a token lives at least its lifetime, whatever the millisecond it was issued at', () => {
    const tokens = new GatewayTokens('s'.repeat(32), 1);
    for (const issuedAt of [1_000_000, 1_000_001, 1_000_500, 1_000_999]) {
      const { token } = tokens.issue('sb', 'u', 'k', issuedAt);
      assert.ok(tokens.verify(token, issuedAt + 999), `issued at ${issuedAt}, checked 999 ms later`);
      assert.equal(tokens.verify(token, issuedAt + 2000), undefined, `issued at ${issuedAt}, checked 2 s later`);
    }
  });

  it('refuses a token signed with another secret or for nothing', () => {
    const { token } = new GatewayTokens('a'.repeat(32), 60).issue('sb', 'u', 'k');
    assert.equal(new GatewayTokens('b'.repeat(32), 60).verify(token), undefined);
    assert.equal(new GatewayTokens('a'.repeat(32), 60).verify('not.a.token'), undefined);
    assert.equal(new GatewayTokens('a'.repeat(32), 60).verify(token)?.sid, 'sb');
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SandboxGrant } from '../services/sandbox-access.js';
import { LiveGrants } from './live-grants.js';

describe('LiveGrants', () => {
  it('cuts what no longer holds, on a recheck and on an access change while started', async () => {
    const revokedKeys = new Set<string>();
    const listeners = new Set<() => Promise<void>>();
    const live = new LiveGrants({
      access: { revokedGrants: async (grants: readonly SandboxGrant[]) => grants.filter((g) => revokedKeys.has(g.keyId)) },
      subscribe: (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
      onError: (error) => assert.fail(String(error)),
    });
    const cut: string[] = [];
    live.track({ keyId: 'k1', callerId: 'u', sandboxId: 'sb' }, () => cut.push('k1'));
    const untrack = live.track({ keyId: 'k2', callerId: 'u', sandboxId: 'sb' }, () => cut.push('k2'));
    live.track({ keyId: 'k3', callerId: 'u', sandboxId: 'sb' }, () => cut.push('k3'));
    assert.equal(live.size, 3);

    revokedKeys.add('k1');
    await live.recheck();
    assert.deepEqual(cut, ['k1']);
    assert.equal(live.size, 2);

    untrack();
    revokedKeys.add('k2');
    await live.recheck();
    assert.deepEqual(cut, ['k1'], 'an untracked entry is not cut');

    live.start();
    assert.equal(listeners.size, 1);
    revokedKeys.add('k3');
    for (const listener of listeners) await listener();
    assert.deepEqual(cut, ['k1', 'k3']);
    assert.equal(live.size, 0);
    live.close();
    assert.equal(listeners.size, 0, 'close() unsubscribes');
  });
});

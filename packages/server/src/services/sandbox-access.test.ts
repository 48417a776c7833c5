import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SandboxRuntime } from '../runtime/runtime.js';
import { sandboxFixture } from '../testing/sandbox-fixture.js';
import { GatewayTokens } from './gateway-tokens.js';
import { SandboxAccess } from './sandbox-access.js';
import type { SandboxRecord } from '../records/sandbox-records.js';

const runtime = { name: 'fake' } as unknown as SandboxRuntime;

/** A SandboxAccess over fixed rows; key `k-ok` may see everything, any other key nothing. */
function accessOver(rows: SandboxRecord[], options: { runtime?: SandboxRuntime | null; users?: string[] } = {}) {
  const touched: string[] = [];
  const tokens = new GatewayTokens('s'.repeat(32), 60);
  const byId = new Map(rows.map((r) => [r.id, r]));
  const access = new SandboxAccess({
    store: {
      getSandbox: async (id) => byId.get(id),
      getSandboxes: async (ids) => ids.flatMap((id) => byId.get(id) ?? []),
      getUser: async (id) => ((options.users ?? []).includes(id) ? { id, name: id, email: null, isAdmin: false, createdAt: '2020-01-01T00:00:00.000Z' } : undefined),
    },
    runtime: options.runtime === undefined ? runtime : options.runtime,
    tokens,
    access: { maySee: async (keyId) => keyId === 'k-ok' },
    activity: { touch: (id) => touched.push(id) },
    instanceId: 'here',
  });
  return { access, tokens, touched };
}

describe('SandboxAccess', () => {
  it('classifies a sandbox: missing, ended, not running, no container, no runtime, running', async () => {
    const rows = [
      sandboxFixture({ id: 'ended', userId: 'u', status: 'TIMEOUT' }),
      sandboxFixture({ id: 'starting', userId: 'u', status: 'PROVISIONING' }),
      sandboxFixture({ id: 'bare', userId: 'u', status: 'RUNNING' }),
      sandboxFixture({ id: 'up', userId: 'u', status: 'RUNNING', runtimeId: 'r-up' }),
    ];
    const { access, touched } = accessOver(rows);
    assert.deepEqual(await access.state('nope'), { kind: 'missing' });
    assert.deepEqual(await access.state('ended'), { kind: 'ended', sandboxId: 'ended', status: 'TIMEOUT' });
    assert.deepEqual(await access.state('starting'), { kind: 'not-running', sandboxId: 'starting', status: 'PROVISIONING' });
    assert.deepEqual(await access.state('bare'), { kind: 'no-container', sandboxId: 'bare', status: 'RUNNING' });
    assert.deepEqual(await access.state('up'), { kind: 'running', handle: { sandboxId: 'up', userId: 'u', runtimeId: 'r-up', runtime, cpuCores: 1 } });
    assert.deepEqual(touched, [], 'state() records no activity');
    assert.equal((await access.open('up')).kind, 'running');
    assert.equal((await access.open('starting')).kind, 'not-running');
    assert.deepEqual(touched, ['up'], 'open() marks only a running sandbox active');
    assert.deepEqual(await accessOver(rows, { runtime: null }).access.state('up'), { kind: 'no-runtime', sandboxId: 'up' });
  });

  it('checks a gateway token in order: present, valid, this sandbox, this namespace, still granted', async () => {
    const rows = [sandboxFixture({ id: 'sb', userId: 'owner', status: 'RUNNING', runtimeId: 'r' })];
    const { access, tokens } = accessOver(rows);
    const ok = tokens.issue('sb', 'caller', 'k-ok').token;
    assert.deepEqual(await access.forGatewayToken('owner', 'sb', undefined), { ok: false, denied: 'missing-token' });
    assert.deepEqual(await access.forGatewayToken('owner', 'sb', 'junk'), { ok: false, denied: 'invalid-token' });
    assert.deepEqual(await access.forGatewayToken('owner', 'other', ok), { ok: false, denied: 'other-sandbox' });
    assert.deepEqual(await access.forGatewayToken('stranger', 'sb', ok), { ok: false, denied: 'other-namespace' });
    assert.deepEqual(await access.forGatewayToken('owner', 'sb', tokens.issue('sb', 'caller', 'k-revoked').token), { ok: false, denied: 'revoked' });
    for (const userNs of ['owner', 'caller']) {
      const admitted = await access.forGatewayToken(userNs, 'sb', ok);
      assert.ok(admitted.ok);
      assert.deepEqual(admitted.grant, { keyId: 'k-ok', callerId: 'caller', sandboxId: 'sb' });
      assert.equal(admitted.state.kind, 'running');
    }
    const gone = await access.forGatewayToken('anyone', 'gone', tokens.issue('gone', 'caller', 'k-ok').token);
    assert.ok(gone.ok && gone.state.kind === 'missing', 'a missing sandbox is reported before the namespace check');
  });

  it('re-checks grants and session keys; keyless sessions need the owner to exist', async () => {
    const rows = [sandboxFixture({ id: 'a', userId: 'owner' }), sandboxFixture({ id: 'b', userId: 'gone-user' })];
    const { access } = accessOver(rows, { users: ['owner'] });
    assert.equal(await access.mayUse('k-ok', 'a'), true);
    assert.equal(await access.mayUse('k-bad', 'a'), false);
    assert.equal(await access.mayUse('k-ok', 'missing'), false);
    assert.equal(await access.mayUse(null, 'a'), true);
    assert.equal(await access.mayUse(null, 'b'), false);
    const keep = { keyId: 'k-ok', callerId: 'c', sandboxId: 'a' };
    const cut = { keyId: 'k-bad', callerId: 'c', sandboxId: 'a' };
    const orphan = { keyId: 'k-ok', callerId: 'c', sandboxId: 'missing' };
    assert.deepEqual(await access.revokedGrants([keep, cut, orphan]), [cut, orphan]);
  });

  it('lists the live sandboxes this instance runs', async () => {
    const rows = [
      sandboxFixture({ id: 'mine', userId: 'u', status: 'RUNNING', runtimeOwner: 'here' }),
      sandboxFixture({ id: 'unclaimed', userId: 'u', status: 'PENDING' }),
      sandboxFixture({ id: 'theirs', userId: 'u', status: 'RUNNING', runtimeOwner: 'elsewhere' }),
      sandboxFixture({ id: 'over', userId: 'u', status: 'TERMINATED', runtimeOwner: 'here' }),
    ];
    const { access } = accessOver(rows);
    assert.deepEqual([...(await access.liveHere(['mine', 'unclaimed', 'theirs', 'over', 'missing']))].sort(), ['mine', 'unclaimed']);
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { CorralConfig } from '../config.js';
import { MAX_EGRESS_POLICY_ENTRIES } from '../runtime/egress/egress-policy.js';
import type { EgressLogEntry } from '../runtime/runtime.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import { sandboxFixture } from '../testing/sandbox-fixture.js';
import { eventually } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

interface Sandbox {
  id: string;
  status: string;
  networkAccess: boolean;
  networkAllowlist: string[] | null;
  networkDenylist: string[] | null;
}
interface PolicyStatus {
  policy: { allowlist: string[] | null; denylist: string[] | null };
  generation: number;
  applied_generation: number;
  applied: boolean;
}
interface ErrorBody {
  code: string;
  detail: string;
  errors?: Array<{ param: string; details: string }>;
}

/** A server on the gated test runtime; every sandbox starts at once unless `gated`. */
async function egressServer(
  options: { egress?: boolean; gated?: boolean; runtime?: GatedRuntime; dataDir?: string; instanceId?: string } = {},
  overrides: Partial<CorralConfig> = {},
): Promise<{ t: TestServer; runtime: GatedRuntime; close: () => Promise<void> }> {
  const runtime = options.runtime ?? new GatedRuntime({ egress: options.egress ?? true });
  if (!options.gated) runtime.openAll();
  const t = await startTestServer(
    {
      instanceId: options.instanceId ?? `egress-${randomBytes(4).toString('hex')}`,
      reconcileIntervalMs: 60_000,
      createWaitMs: 2_000,
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
      ...overrides,
    },
    {},
    { runtime },
  );
  return {
    t,
    runtime,
    async close() {
      runtime.openAll();
      await t.close();
    },
  };
}

async function create(t: TestServer, body: Record<string, unknown>, key?: string): Promise<Sandbox> {
  const response = await t.request('POST', '/api/v1/sandbox', { body: { name: 'eg', docker_image: 'busybox:latest', ...body }, ...(key ? { key } : {}) });
  assert.equal(response.statusCode, 201, response.body);
  return response.json<Sandbox>();
}

async function refused(t: TestServer, body: Record<string, unknown>): Promise<{ status: number; error: ErrorBody }> {
  const response = await t.request('POST', '/api/v1/sandbox', { body: { name: 'eg', docker_image: 'busybox:latest', ...body } });
  return { status: response.statusCode, error: response.json<ErrorBody>() };
}

async function getPolicy(t: TestServer, id: string): Promise<PolicyStatus> {
  const response = await t.request('GET', `/api/v1/sandbox/${id}/egress-policy`);
  assert.equal(response.statusCode, 200, response.body);
  return response.json<PolicyStatus>();
}

async function putPolicy(t: TestServer, id: string, body: unknown): Promise<{ status: number; body: PolicyStatus & ErrorBody }> {
  const response = await t.request('PUT', `/api/v1/sandbox/${id}/egress-policy`, { body });
  return { status: response.statusCode, body: response.json<PolicyStatus & ErrorBody>() };
}

const runtimeIdOf = async (t: TestServer, id: string): Promise<string> =>
  eventually(async () => (await t.server.store.getSandbox(id))?.runtimeId ?? undefined, 5_000, 'a runtime id');

describe('egress policy at create', { timeout: 60_000 }, () => {
  it('refuses invalid lists with a 422 naming the field and the reason', async () => {
    const s = await egressServer();
    try {
      const cases: Array<[Record<string, unknown>, string, RegExp]> = [
        [{ network_allowlist: ['a.test'], network_denylist: ['b.test'] }, 'network_denylist', /mutually exclusive/],
        [{ network_allowlist: ['https://a.test'] }, 'network_allowlist[0]', /schemes/],
        [{ network_denylist: ['ok.test', 'a.test:443'] }, 'network_denylist[1]', /ports/],
        [{ network_allowlist: ['a.test/path'] }, 'network_allowlist[0]', /paths/],
        [{ network_allowlist: ['*'] }, 'network_allowlist[0]', /bare/],
        [{ network_allowlist: ['a.*.test'] }, 'network_allowlist[0]', /wildcard/],
        [{ network_allowlist: ['10.0.0.0/33'] }, 'network_allowlist[0]', /prefix/],
        [{ network_allowlist: Array.from({ length: MAX_EGRESS_POLICY_ENTRIES + 1 }, (_, i) => `h${i}.test`) }, 'network_allowlist', /at most 256/],
        [{ network_access: false, network_allowlist: ['a.test'] }, 'network_access', /no network/],
        [{ network_access: false, network_denylist: [] }, 'network_access', /no network/],
      ];
      for (const [body, param, reason] of cases) {
        const { status, error } = await refused(s.t, body);
        assert.equal(status, 422, JSON.stringify(body).slice(0, 200));
        assert.equal(error.code, 'VALIDATION_FAILED');
        assert.equal(error.errors?.[0]?.param, param, JSON.stringify(error));
        assert.match(error.errors?.[0]?.details ?? '', reason);
      }
      assert.equal((await refused(s.t, { network_allowlist: 'a.test' })).status, 422, 'a string is not a list');
      assert.equal((await refused(s.t, { network_allowlist: [7] })).status, 422, 'entries are strings');
      assert.equal(s.runtime.created.length, 0, 'nothing was started');
    } finally {
      await s.close();
    }
  });

  it('stores the lists normalized, shows them, and hands the driver the policy (no network for [] and network_access: false)', async () => {
    const s = await egressServer();
    try {
      const allow = await create(s.t, { network_allowlist: [' *.Example.TEST ', '*.example.test', '198.51.100.0/24', '2001:db8::/32'] });
      assert.deepEqual(allow.networkAllowlist, ['*.example.test', '198.51.100.0/24', '2001:db8::/32']);
      assert.equal(allow.networkDenylist, null);
      assert.equal(allow.networkAccess, true);
      assert.deepEqual(s.runtime.specs.get(allow.id)?.egress, { allowlist: ['*.example.test', '198.51.100.0/24', '2001:db8::/32'], denylist: null });
      assert.equal(s.runtime.specs.get(allow.id)?.networkAccess, true);

      const deny = await create(s.t, { network_denylist: ['evil.test'] });
      assert.deepEqual([deny.networkAllowlist, deny.networkDenylist, deny.networkAccess], [null, ['evil.test'], true]);
      assert.deepEqual(s.runtime.specs.get(deny.id)?.egress, { allowlist: null, denylist: ['evil.test'] });

      for (const body of [{ network_allowlist: [] }, { network_access: false }, { network_access: false, network_allowlist: [] }]) {
        const none = await create(s.t, body);
        assert.deepEqual([none.networkAccess, none.networkAllowlist, none.networkDenylist], [false, [], null], JSON.stringify(body));
        // A driver that enforces policies gets the sandbox wired, with the empty allow list to enforce
        // (no route, nothing out), so that a later policy can open it.
        assert.equal(s.runtime.specs.get(none.id)?.networkAccess, true);
        assert.deepEqual(s.runtime.specs.get(none.id)?.egress, { allowlist: [], denylist: null });
      }

      for (const body of [{}, { network_access: true }, { network_denylist: [] }, { network_allowlist: null, network_denylist: null }]) {
        const open = await create(s.t, body);
        assert.equal(open.networkAccess, true, JSON.stringify(body));
        assert.equal(open.networkAllowlist, null);
        assert.equal(s.runtime.specs.get(open.id)?.networkAccess, true);
        assert.equal(s.runtime.specs.get(open.id)?.egress, undefined, 'open egress needs no policy');
      }
    } finally {
      await s.close();
    }
  });

  it('returns the same sandbox for an idempotent retry', async () => {
    const s = await egressServer();
    try {
      const first = await create(s.t, { network_allowlist: ['a.test'], idempotency_key: 'egress-retry' });
      const again = await create(s.t, { network_allowlist: ['a.test'], idempotency_key: 'egress-retry' });
      assert.equal(again.id, first.id);
      assert.equal(s.runtime.created.length, 1);
    } finally {
      await s.close();
    }
  });

  it('refuses a policy on a driver that does not enforce egress (422 EGRESS_UNSUPPORTED), but not open or no network', async () => {
    const s = await egressServer({ egress: false });
    try {
      for (const body of [{ network_allowlist: ['a.test'] }, { network_denylist: ['b.test'] }]) {
        const { status, error } = await refused(s.t, body);
        assert.equal(status, 422);
        assert.equal(error.code, 'EGRESS_UNSUPPORTED');
        assert.match(error.detail, /gated runtime driver does not enforce egress/);
        assert.equal(error.errors?.[0]?.param, Object.keys(body)[0]);
      }
      assert.equal(s.runtime.created.length, 0);
      const none = await create(s.t, { network_allowlist: [] });
      // No policy to hand over: the sandbox gets no network at all.
      assert.equal(s.runtime.specs.get(none.id)?.networkAccess, false);
      assert.equal(s.runtime.specs.get(none.id)?.egress, undefined);
      await create(s.t, { network_denylist: [] });
      await create(s.t, {});
    } finally {
      await s.close();
    }
  });
});

describe('GET/PUT /sandbox/{id}/egress-policy', { timeout: 60_000 }, () => {
  it('reads and replaces the policy of a running sandbox, live, with generations', async () => {
    const s = await egressServer();
    try {
      const sb = await create(s.t, { network_allowlist: ['a.test'] });
      assert.equal(sb.status, 'RUNNING');
      assert.deepEqual(await getPolicy(s.t, sb.id), { policy: { allowlist: ['a.test'], denylist: null }, generation: 1, applied_generation: 1, applied: true });

      const put = await putPolicy(s.t, sb.id, { allowlist: null, denylist: ['Evil.test', '203.0.113.0/24'] });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.deepEqual(put.body, { policy: { allowlist: null, denylist: ['evil.test', '203.0.113.0/24'] }, generation: 2, applied_generation: 2, applied: true });
      const runtimeId = await runtimeIdOf(s.t, sb.id);
      assert.deepEqual(s.runtime.egressPolicies.get(runtimeId), [{ allowlist: null, denylist: ['evil.test', '203.0.113.0/24'] }]);
      const shown = (await s.t.request('GET', `/api/v1/sandbox/${sb.id}`)).json<Sandbox>();
      assert.deepEqual([shown.networkAccess, shown.networkAllowlist, shown.networkDenylist], [true, null, ['evil.test', '203.0.113.0/24']]);

      // `[]` allow list: closes egress (the sandbox keeps its interface; the driver drops everything).
      const closed = await putPolicy(s.t, sb.id, { allowlist: [] });
      assert.deepEqual([closed.body.generation, closed.body.applied], [3, true]);
      assert.equal((await s.t.request('GET', `/api/v1/sandbox/${sb.id}`)).json<Sandbox>().networkAccess, false);
      // The Prime SDK's `set_network(allow=["*"])`: open.
      const open = await putPolicy(s.t, sb.id, { allowlist: null, denylist: [] });
      assert.deepEqual(open.body, { policy: { allowlist: null, denylist: [] }, generation: 4, applied_generation: 4, applied: true });
      assert.equal(s.runtime.egressPolicies.get(runtimeId)?.length, 3);
    } finally {
      await s.close();
    }
  });

  it('refuses invalid bodies with a 422 naming the field', async () => {
    const s = await egressServer();
    try {
      const sb = await create(s.t, {});
      const cases: Array<[unknown, string]> = [
        [{}, 'allowlist'],
        [{ allowlist: null, denylist: null }, 'allowlist'],
        [{ allowlist: [], denylist: [] }, 'denylist'],
        [{ allowlist: ['ok.test', 'http://x.test'] }, 'allowlist[1]'],
        [{ denylist: ['a.test:80'] }, 'denylist[0]'],
      ];
      for (const [body, param] of cases) {
        const { status, body: error } = await putPolicy(s.t, sb.id, body);
        assert.equal(status, 422, JSON.stringify(body));
        assert.equal(error.errors?.[0]?.param, param, JSON.stringify(error));
      }
      assert.equal((await putPolicy(s.t, sb.id, { allowlist: 'a.test' })).status, 422);
      assert.equal((await getPolicy(s.t, sb.id)).generation, 1, 'nothing was stored');
    } finally {
      await s.close();
    }
  });

  it('stores a PUT on a PENDING or PROVISIONING sandbox and starts with it, or applies it once running', async () => {
    const s = await egressServer({ gated: true }, { maxConcurrentProvisioning: 1, createWaitMs: 0 });
    try {
      const first = await create(s.t, { network_allowlist: ['one.test'] });
      await s.runtime.started(first.id);
      const second = await create(s.t, { network_allowlist: ['two.test'] });
      assert.equal((await s.t.server.store.getSandbox(second.id))?.status, 'PENDING');
      // PROVISIONING (create already called with generation 1) and PENDING (not yet).
      const onProvisioning = await putPolicy(s.t, first.id, { allowlist: ['one-b.test'] });
      assert.deepEqual([onProvisioning.status, onProvisioning.body.generation, onProvisioning.body.applied], [200, 2, false]);
      const onPending = await putPolicy(s.t, second.id, { denylist: ['two-b.test'] });
      assert.deepEqual([onPending.status, onPending.body.generation, onPending.body.applied_generation, onPending.body.applied], [200, 2, 0, false]);
      s.runtime.openAll();
      const firstApplied = await eventually(async () => ((await getPolicy(s.t, first.id)).applied ? true : undefined), 5_000, 'first applied');
      assert.ok(firstApplied);
      assert.deepEqual(s.runtime.egressPolicies.get(await runtimeIdOf(s.t, first.id)), [{ allowlist: ['one-b.test'], denylist: null }]);
      await eventually(async () => ((await getPolicy(s.t, second.id)).applied ? true : undefined), 5_000, 'second applied');
      assert.deepEqual(s.runtime.specs.get(second.id)?.egress, { allowlist: null, denylist: ['two-b.test'] }, 'created with the newer policy');
      assert.equal(s.runtime.egressPolicies.get(await runtimeIdOf(s.t, second.id)), undefined, 'no live change was needed');
      assert.deepEqual(await getPolicy(s.t, second.id), { policy: { allowlist: null, denylist: ['two-b.test'] }, generation: 2, applied_generation: 2, applied: true });
    } finally {
      await s.close();
    }
  });

  it('answers 409 on an ended sandbox, opens a sandbox created without egress (409 EGRESS_NO_NETWORK where the driver cannot), and 404 to others', async () => {
    const s = await egressServer();
    try {
      const ended = await create(s.t, {});
      assert.equal((await s.t.request('DELETE', `/api/v1/sandbox/${ended.id}`)).statusCode, 200);
      const late = await putPolicy(s.t, ended.id, { allowlist: [] });
      assert.deepEqual([late.status, late.body.code], [409, 'SANDBOX_NOT_RUNNING']);
      assert.equal((await getPolicy(s.t, ended.id)).generation, 1, 'an ended sandbox still shows its policy');

      // On a driver that enforces policies, a sandbox created with no egress can be opened later.
      const offline = await create(s.t, { network_allowlist: [] });
      const opened = await putPolicy(s.t, offline.id, { allowlist: ['a.test'] });
      assert.deepEqual([opened.status, opened.body.generation, opened.body.applied], [200, 2, true], JSON.stringify(opened.body));
      assert.deepEqual(s.runtime.egressPolicies.get(await runtimeIdOf(s.t, offline.id))?.at(-1), { allowlist: ['a.test'], denylist: null });
      const closedAgain = await putPolicy(s.t, offline.id, { allowlist: [] });
      assert.deepEqual([closedAgain.status, closedAgain.body.generation, closedAgain.body.applied], [200, 3, true]);

      // On one that does not, it has no interface: it can only stay closed.
      const plain = await egressServer({ egress: false });
      try {
        const unwired = await create(plain.t, { network_allowlist: [] });
        for (const body of [{ allowlist: ['a.test'] }, { denylist: [] }, { denylist: ['x.test'] }]) {
          const refusedOpen = await putPolicy(plain.t, unwired.id, body);
          assert.deepEqual([refusedOpen.status, refusedOpen.body.code], [409, 'EGRESS_NO_NETWORK'], JSON.stringify(body));
        }
        const stillClosed = await putPolicy(plain.t, unwired.id, { allowlist: [] });
        assert.deepEqual([stillClosed.status, stillClosed.body.generation, stillClosed.body.applied], [200, 2, true]);
      } finally {
        await plain.close();
      }

      const other = await s.t.createUser(`other-${randomBytes(3).toString('hex')}`);
      for (const [method, url, body] of [
        ['GET', `/api/v1/sandbox/${offline.id}/egress-policy`, undefined],
        ['PUT', `/api/v1/sandbox/${offline.id}/egress-policy`, { allowlist: [] }],
        ['GET', `/api/v1/sandbox/${offline.id}/egress-log`, undefined],
      ] as const) {
        const response = await s.t.request(method, url, { key: other.key, ...(body ? { body } : {}) });
        assert.deepEqual([response.statusCode, response.json<ErrorBody>().code], [404, 'SANDBOX_NOT_FOUND'], `${method} ${url}`);
      }
    } finally {
      await s.close();
    }
  });

  it('answers applied: false when the driver fails or is slow, and the reconciler catches up', async () => {
    const s = await egressServer({}, { reconcileIntervalMs: 200 });
    try {
      const sb = await create(s.t, { network_allowlist: ['a.test'] });
      const runtimeId = await runtimeIdOf(s.t, sb.id);
      s.runtime.failEgress = 'RUNTIME_ERROR';
      const failed = await putPolicy(s.t, sb.id, { allowlist: ['b.test'] });
      assert.deepEqual([failed.status, failed.body.generation, failed.body.applied_generation, failed.body.applied], [200, 2, 1, false]);
      s.runtime.failEgress = null;
      await eventually(async () => ((await getPolicy(s.t, sb.id)).applied ? true : undefined), 10_000, 'the retry');
      assert.deepEqual(s.runtime.egressPolicies.get(runtimeId), [{ allowlist: ['b.test'], denylist: null }]);

      s.runtime.egressDelayMs = 1_800;
      const started = performance.now();
      const slow = await putPolicy(s.t, sb.id, { allowlist: ['c.test'] });
      const ms = performance.now() - started;
      assert.deepEqual([slow.status, slow.body.generation, slow.body.applied], [200, 3, false]);
      assert.ok(ms >= 900 && ms < 1_700, `answered after ${Math.round(ms)} ms: waits about a second`);
      await eventually(async () => ((await getPolicy(s.t, sb.id)).applied ? true : undefined), 10_000, 'the slow apply');
      assert.deepEqual(s.runtime.egressPolicies.get(runtimeId)?.at(-1), { allowlist: ['c.test'], denylist: null });
    } finally {
      s.runtime.egressDelayMs = 0;
      await s.close();
    }
  });

  it("stores a PUT on another replica's sandbox without touching this runtime (that replica applies it)", async () => {
    const s = await egressServer();
    try {
      const id = `rep${randomBytes(10).toString('hex')}`;
      const admin = (await s.t.request('GET', '/api/v1/me')).json<{ user: { id: string } }>().user.id;
      const now = new Date().toISOString();
      await s.t.server.store.insertSandbox(
        sandboxFixture({ id, userId: admin, status: 'RUNNING', runtimeId: 'elsewhere-1', runtimeOwner: 'another-replica', egressAppliedGeneration: 1, createdAt: now, updatedAt: now }),
      );
      const put = await putPolicy(s.t, id, { allowlist: ['a.test'] });
      assert.deepEqual([put.status, put.body.generation, put.body.applied], [200, 2, false]);
      await s.t.server.reconciler.reconcile();
      assert.equal(s.runtime.egressPolicies.size, 0, 'this runtime was never asked');
      assert.equal((await getPolicy(s.t, id)).applied, false);
    } finally {
      await s.close();
    }
  });

  it('applies concurrent PUTs in order: the last one stored is the one enforced', async () => {
    const s = await egressServer();
    try {
      const sb = await create(s.t, { network_allowlist: ['a.test'] });
      const runtimeId = await runtimeIdOf(s.t, sb.id);
      s.runtime.egressDelayMs = 30;
      await Promise.all(Array.from({ length: 6 }, (_, i) => putPolicy(s.t, sb.id, { allowlist: [`h${i}.test`] })));
      const status = await eventually(async () => {
        const p = await getPolicy(s.t, sb.id);
        return p.applied ? p : undefined;
      }, 10_000, 'applied');
      assert.equal(status.generation, 7);
      assert.deepEqual(s.runtime.egressPolicies.get(runtimeId)?.at(-1), status.policy);
    } finally {
      s.runtime.egressDelayMs = 0;
      await s.close();
    }
  });

  it('answers 422 EGRESS_UNSUPPORTED for a policy change on a driver that does not enforce egress', async () => {
    const s = await egressServer({ egress: false });
    try {
      const sb = await create(s.t, {});
      const refusedPut = await putPolicy(s.t, sb.id, { allowlist: ['a.test'] });
      assert.deepEqual([refusedPut.status, refusedPut.body.code], [422, 'EGRESS_UNSUPPORTED']);
      assert.equal((await getPolicy(s.t, sb.id)).generation, 1, 'nothing was stored');
      const stillOpen = await putPolicy(s.t, sb.id, { allowlist: null, denylist: [] });
      assert.deepEqual([stillOpen.status, stillOpen.body.applied], [200, true], 'open stays open: nothing to enforce');
      const log = await s.t.request('GET', `/api/v1/sandbox/${sb.id}/egress-log`);
      assert.deepEqual([log.statusCode, log.json<ErrorBody>().code], [422, 'EGRESS_UNSUPPORTED']);
    } finally {
      await s.close();
    }
  });

  it('never starts a stored policy on a driver that does not enforce it: ERROR START_FAILED instead of unrestricted', async () => {
    const s = await egressServer({ egress: false });
    try {
      // A row written while the server ran without a runtime (or by a replica with another driver).
      const owner = await s.t.createUser(`owner-${randomBytes(3).toString('hex')}`);
      const id = `pre${randomBytes(10).toString('hex')}`;
      await s.t.server.store.insertSandbox(
        sandboxFixture({ id, userId: owner.id, dockerImage: 'busybox:latest', networkAllowlist: ['a.test'], runtimeOwner: s.t.server.config.instanceId, createdAt: new Date().toISOString(), updatedAt: new Date().toISOString() }),
      );
      await s.t.server.reconciler.reconcile();
      const ended = await eventually(async () => {
        const row = await s.t.server.store.getSandbox(id);
        return row?.status === 'ERROR' ? row : undefined;
      }, 5_000, 'ERROR');
      assert.equal(ended.errorType, 'START_FAILED');
      assert.match(ended.errorMessage ?? '', /does not enforce egress policies/);
      assert.ok(!s.runtime.live().includes(id), 'no container is left running');
      assert.ok(!s.runtime.created.includes(id), 'the driver was never asked');
    } finally {
      await s.close();
    }
  });

  it('re-applies every running sandbox policy after a server restart (drivers keep it in memory)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'corral-egress-restart-'));
    const instanceId = `egress-restart-${randomBytes(4).toString('hex')}`;
    const runtime = new GatedRuntime();
    try {
      const before = await egressServer({ runtime, dataDir, instanceId });
      const restricted = await create(before.t, { network_allowlist: ['a.test'] });
      const changedToOpen = await create(before.t, { network_allowlist: ['b.test'] });
      assert.equal((await putPolicy(before.t, changedToOpen.id, { denylist: [] })).body.applied, true);
      const open = await create(before.t, {});
      const offline = await create(before.t, { network_allowlist: [] });
      const ids = await Promise.all([restricted, changedToOpen, open, offline].map((sb) => runtimeIdOf(before.t, sb.id)));
      await before.t.server.close();
      const counts = ids.map((id) => runtime.egressPolicies.get(id)?.length ?? 0);
      assert.deepEqual(counts, [0, 1, 0, 0]);

      const after = await egressServer({ runtime, dataDir, instanceId });
      try {
        const reapplied = ids.map((id) => runtime.egressPolicies.get(id) ?? []);
        assert.deepEqual(reapplied[0], [{ allowlist: ['a.test'], denylist: null }], 'restricted: re-applied at startup');
        assert.deepEqual(reapplied[1]?.at(-1), { allowlist: null, denylist: [] }, 'changed live: re-applied');
        assert.equal(reapplied[1]?.length, 2);
        assert.equal(reapplied[2]?.length, 0, 'created open: nothing to re-apply');
        assert.deepEqual(reapplied[3], [{ allowlist: [], denylist: null }], 'created with no egress: re-applied (the driver holds it closed)');
        // And once only.
        await after.t.server.reconciler.reconcile();
        assert.equal(runtime.egressPolicies.get(ids[0] as string)?.length, 1);
      } finally {
        await after.t.server.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('GET /sandbox/{id}/egress-log', { timeout: 30_000 }, () => {
  it("returns the driver's entries, bounded by limit (default 100, 1..1000)", async () => {
    const s = await egressServer();
    try {
      const sb = await create(s.t, { network_allowlist: ['*.example.test'] });
      const runtimeId = await runtimeIdOf(s.t, sb.id);
      const entries: EgressLogEntry[] = Array.from({ length: 150 }, (_, i) => ({
        at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
        kind: i % 2 === 0 ? 'dns' : 'connect',
        destination: i % 2 === 0 ? 'api.example.test' : '198.51.100.7',
        port: i % 2 === 0 ? null : 443,
        protocol: i % 2 === 0 ? 'udp' : 'tcp',
        verdict: i % 3 === 0 ? 'denied' : 'allowed',
        ...(i % 2 === 0 ? { answers: ['198.51.100.7'] } : {}),
      }));
      s.runtime.egressLogs.set(runtimeId, entries);
      const all = await s.t.request('GET', `/api/v1/sandbox/${sb.id}/egress-log`);
      assert.equal(all.statusCode, 200, all.body);
      const got = all.json<{ entries: EgressLogEntry[] }>().entries;
      assert.equal(got.length, 100);
      assert.deepEqual(got.at(-1), entries.at(-1));
      assert.deepEqual(got[0], entries[50]);
      const few = await s.t.request('GET', `/api/v1/sandbox/${sb.id}/egress-log?limit=3`);
      assert.deepEqual(few.json<{ entries: EgressLogEntry[] }>().entries, entries.slice(-3));
      for (const limit of ['0', '1001', 'x']) {
        const bad = await s.t.request('GET', `/api/v1/sandbox/${sb.id}/egress-log?limit=${limit}`);
        assert.equal(bad.statusCode, 422, limit);
      }
    } finally {
      await s.close();
    }
  });

  it('is empty for a sandbox that has no container yet', async () => {
    const s = await egressServer({ gated: true }, { createWaitMs: 0 });
    try {
      const sb = await create(s.t, { network_allowlist: ['a.test'] });
      const log = await s.t.request('GET', `/api/v1/sandbox/${sb.id}/egress-log`);
      assert.deepEqual([log.statusCode, log.json<{ entries: unknown[] }>().entries], [200, []]);
    } finally {
      await s.close();
    }
  });
});

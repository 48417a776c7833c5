import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { ImageArtifactRecord, ImageBuildRecord } from '../records/image-records.js';
import type { SandboxRecord, SandboxStatus } from '../records/sandbox-records.js';
import type { SandboxEventRecord } from '../records/event-records.js';
import type { CheckpointRecord } from '../records/checkpoint-records.js';
import type { WebhookDeliveryRecord, WebhookEndpointRecord } from '../records/webhook-records.js';
import { sandboxFixture } from '../testing/sandbox-fixture.js';
import type { SandboxFilter, Store } from './store.js';
import type { ApiKeyRecord, TeamRecord, UserRecord } from '../records/account-records.js';

/**
 * Registers the behavioural test suite of the {@link Store} interface under `name`.
 *
 * `open` must return a migrated store; it is called once for the suite and again by the tests
 * that need a second, independent connection (a "replica"; PostgreSQL only). Every test uses
 * ids and names unique to this run, so the suite can run repeatedly (and concurrently) against
 * one shared database.
 */
export function runStoreSuite(name: string, open: () => Promise<Store>): void {
  describe(name, () => {
    const run = randomUUID().slice(0, 8);
    let counter = 0;
    /** A name unique to this run. */
    const unique = (what: string): string => `${what}-${run}-${String(++counter).padStart(5, '0')}`;
    let store: Store;

    before(async () => {
      store = await open();
    });
    after(async () => {
      await store.close();
    });

    /** A sandbox with every nullable field null; `overrides` sets the rest. */
    function sandbox(overrides: Partial<SandboxRecord> = {}): SandboxRecord {
      return sandboxFixture({ id: unique('sb'), userId: unique('user'), diskSizeGb: 5, networkAccess: false, ...overrides });
    }

    /**
     * An ISO timestamp `minutes` after a fixed origin, so tests control ordering. The origin is in
     * the past: `updateSandbox` stamps `updatedAt` with the real clock, which must come later.
     */
    const at = (minutes: number): string => new Date(Date.UTC(2020, 0, 1) + minutes * 60_000).toISOString();

    async function insertAll(records: SandboxRecord[]): Promise<void> {
      for (const record of records) {
        const { created } = await store.insertSandbox(record);
        assert.equal(created, true);
      }
    }

    const ids = (records: readonly SandboxRecord[]): string[] => records.map((r) => r.id);
    const sortedIds = (records: readonly SandboxRecord[]): string[] => ids(records).sort();

    function user(overrides: Partial<UserRecord> = {}): UserRecord {
      const id = unique('user');
      return { id, name: `name-${id}`, email: null, isAdmin: false, createdAt: at(0), ...overrides };
    }

    function team(overrides: Partial<TeamRecord> = {}): TeamRecord {
      const id = unique('team');
      return { id, name: `name-${id}`, createdAt: at(0), ...overrides };
    }

    function apiKey(userId: string, overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
      const id = unique('key');
      return {
        id,
        userId,
        name: 'laptop',
        prefix: 'crl_ab12',
        keyHash: `hash-${id}`,
        createdAt: at(0),
        lastUsedAt: null,
        revokedAt: null,
        ...overrides,
      };
    }

    test('migrate is idempotent', async () => {
      await store.migrate();
      await store.migrate();
      assert.ok(store.kind === 'sqlite' || store.kind === 'postgres');
    });

    describe('sandboxes: insert and get', () => {
      test('round-trips every field when set', async () => {
        const record = sandbox({
          name: 'ünïcode 名前 \'quoted\' "double"',
          startCommand: 'python -c "print(1)"; echo $HOME',
          cpuCores: 0.1,
          memoryGb: 0.3,
          diskSizeGb: 1.5,
          gpuCount: 2,
          gpuType: 'H100_80GB',
          vm: true,
          networkAccess: true,
          status: 'RUNNING',
          timeoutMinutes: 1440,
          idleTimeoutMinutes: 0,
          terminationReason: 'user asked',
          environmentVars: { A: '1', EMPTY: '', 'WITH SPACE': 'x=y', UNICODE: 'é' },
          secrets: { TOKEN: 's3cr3t"\\' },
          advancedConfigs: { nested: { list: [1, 2.5, 'x', null, true] }, flag: false },
          labels: ['b', 'a', 'ünï', 'with space', '%_like'],
          teamId: unique('team'),
          region: 'eu-west',
          registryCredentialsId: unique('cred'),
          guaranteed: true,
          idempotencyKey: unique('idem'),
          createdAt: '2026-03-04T05:06:07.089Z',
          updatedAt: '2026-03-04T05:06:08.000Z',
          startedAt: '2026-03-04T05:06:09.000Z',
          terminatedAt: '2026-03-04T05:07:00.000Z',
          lastActivityAt: '2026-03-04T05:06:30.123Z',
          exitCode: 137,
          errorType: 'OOM_KILLED',
          errorMessage: 'killed\nsecond line',
          runtimeDriver: 'docker',
          runtimeId: 'c0ffee',
          kubernetesJobId: 'corral-c0ffee',
          pausedAt: '2026-03-04T05:06:40.000Z',
          pausedMs: 123_456_789_012,
        });
        const result = await store.insertSandbox(record);
        assert.equal(result.created, true);
        assert.deepEqual(result.sandbox, record);
        assert.deepEqual(await store.getSandbox(record.id), record);
        const resumed = await store.updateSandbox(record.id, { pausedAt: null, pausedMs: 5 });
        assert.equal(resumed?.pausedAt, null);
        assert.equal(resumed?.pausedMs, 5);
      });

      test('round-trips nulls, false, zero, negative and empty values', async () => {
        const record = sandbox({
          cpuCores: 0.25,
          memoryGb: 0.5,
          diskSizeGb: 10,
          environmentVars: {},
          secrets: {},
          advancedConfigs: {},
          labels: [],
          exitCode: -1,
          timeoutMinutes: 0,
        });
        await insertAll([record]);
        const got = await store.getSandbox(record.id);
        assert.deepEqual(got, record);
        assert.deepEqual(got?.environmentVars, {});
        assert.equal(got?.vm, false);
        assert.equal(got?.startCommand, null);
        assert.equal(got?.idleTimeoutMinutes, null);

        const nulls = sandbox({ environmentVars: null, secrets: null, advancedConfigs: null });
        await insertAll([nulls]);
        assert.deepEqual(await store.getSandbox(nulls.id), nulls);
      });

      test('keeps duplicate labels and their order in the record', async () => {
        const record = sandbox({ labels: ['z', 'a', 'z'] });
        await insertAll([record]);
        assert.deepEqual((await store.getSandbox(record.id))?.labels, ['z', 'a', 'z']);
      });

      test('getSandbox returns undefined for an unknown id', async () => {
        assert.equal(await store.getSandbox(unique('missing')), undefined);
      });

      test('getSandboxes returns the existing subset', async () => {
        const a = sandbox();
        const b = sandbox();
        await insertAll([a, b]);
        assert.deepEqual(await store.getSandboxes([]), []);
        const got = await store.getSandboxes([b.id, unique('missing'), a.id, a.id]);
        assert.deepEqual(sortedIds(got), [a.id, b.id].sort());
        assert.deepEqual(
          got.find((s) => s.id === a.id),
          a,
        );
      });

      test('id lists beyond the drivers\' bind-parameter limits work (70,000 ids)', async () => {
        const userId = unique('user');
        const real = [sandbox({ userId, createdAt: at(1) }), sandbox({ userId, createdAt: at(2) })];
        await insertAll(real);
        const many = [...Array.from({ length: 70_000 }, (_, i) => `${unique('missing')}-${i}`), ...ids(real)];
        assert.deepEqual(sortedIds(await store.getSandboxes(many)), sortedIds(real));
        const listed = await store.listSandboxes({ ids: many }, 1, 10);
        assert.deepEqual(listed, { sandboxes: [...real].reverse(), total: 2 });
        assert.deepEqual(ids(await store.findSandboxes({ ids: many, userId }, 10)), ids([...real].reverse()));
        await store.touchSandboxes(many, at(30));
        assert.ok((await store.getSandboxes(ids(real))).every((s) => s.lastActivityAt === at(30)));
      });

      test('a duplicate id is rejected and leaves the original intact', async () => {
        const original = sandbox({ name: 'original' });
        await insertAll([original]);
        await assert.rejects(store.insertSandbox({ ...original, name: 'copy' }));
        await assert.rejects(store.insertSandbox({ ...original, name: 'copy', idempotencyKey: unique('idem') }));
        assert.deepEqual(await store.getSandbox(original.id), original);
      });
    });

    describe('sandboxes: idempotency', () => {
      test('the same user and key returns the existing sandbox', async () => {
        const userId = unique('user');
        const key = unique('idem');
        const first = sandbox({ userId, idempotencyKey: key, name: 'first', labels: ['x'] });
        const second = sandbox({ userId, idempotencyKey: key, name: 'second', labels: ['y'] });
        assert.deepEqual(await store.insertSandbox(first), { sandbox: first, created: true });
        assert.deepEqual(await store.insertSandbox(second), { sandbox: first, created: false });
        assert.equal(await store.getSandbox(second.id), undefined);
        // The losing insert wrote no labels either.
        assert.deepEqual(ids(await store.findSandboxes({ labels: ['y'], userId }, 10)), []);
        assert.deepEqual(ids(await store.findSandboxes({ labels: ['x'], userId }, 10)), [first.id]);
        assert.equal((await store.listSandboxes({ userId }, 1, 10)).total, 1);
      });

      test('different users may reuse a key', async () => {
        const key = unique('idem');
        const a = sandbox({ idempotencyKey: key });
        const b = sandbox({ idempotencyKey: key });
        assert.notEqual(a.userId, b.userId);
        assert.equal((await store.insertSandbox(a)).created, true);
        assert.equal((await store.insertSandbox(b)).created, true);
        assert.deepEqual(await store.getSandbox(b.id), b);
      });

      test('null keys never collide', async () => {
        const userId = unique('user');
        const records = [sandbox({ userId }), sandbox({ userId }), sandbox({ userId })];
        for (const record of records) assert.equal((await store.insertSandbox(record)).created, true);
        assert.equal((await store.listSandboxes({ userId }, 1, 10)).total, 3);
      });

      test('a key is reusable by the same user only through the existing sandbox, whatever its status', async () => {
        const userId = unique('user');
        const key = unique('idem');
        const first = sandbox({ userId, idempotencyKey: key });
        await insertAll([first]);
        await store.updateSandbox(first.id, { status: 'TERMINATED' });
        const again = await store.insertSandbox(sandbox({ userId, idempotencyKey: key }));
        assert.equal(again.created, false);
        assert.equal(again.sandbox.id, first.id);
        assert.equal(again.sandbox.status, 'TERMINATED');
      });
    });

    describe('sandboxes: listing', () => {
      /** One user's fixture: statuses, teams and labels to filter on, created a minute apart. */
      async function fixture() {
        const userId = unique('user');
        const teamId = unique('team');
        const spec: [SandboxStatus, string | null, string[]][] = [
          ['PENDING', null, ['a', 'b']],
          ['RUNNING', teamId, ['a']],
          ['RUNNING', teamId, ['b', 'c']],
          ['TERMINATED', null, ['a', 'a', 'b']],
          ['ERROR', teamId, []],
          ['TIMEOUT', null, ['A']],
          ['PAUSED', null, ['%', '_']],
          ['PROVISIONING', teamId, ['a', 'b', 'c']],
        ];
        const records = spec.map(([status, team, labels], i) =>
          sandbox({ userId, teamId: team, status, labels, createdAt: at(i), updatedAt: at(i) }),
        );
        // Insert out of order: listing order must come from createdAt, not insertion order.
        await insertAll([...records].reverse());
        // Another user's sandboxes with the same team and labels must never leak into userId filters.
        await insertAll([sandbox({ teamId, labels: ['a', 'b', 'c'], status: 'RUNNING', createdAt: at(100) })]);
        return { userId, teamId, records };
      }

      const newestFirst = (records: SandboxRecord[]): string[] =>
        [...records].sort((x, y) => (x.createdAt < y.createdAt ? 1 : x.createdAt > y.createdAt ? -1 : 0)).map((r) => r.id);

      test('filters by user, newest first, with the total', async () => {
        const { userId, records } = await fixture();
        const { sandboxes, total } = await store.listSandboxes({ userId }, 1, 100);
        assert.equal(total, records.length);
        assert.deepEqual(ids(sandboxes), newestFirst(records));
        assert.deepEqual(sandboxes.at(-1), records[0]);
      });

      test('filters by team, status and activeOnly, alone and combined', async () => {
        const { userId, teamId, records } = await fixture();
        const expect = async (filter: SandboxFilter, keep: (r: SandboxRecord) => boolean): Promise<void> => {
          const wanted = newestFirst(records.filter(keep));
          const page = await store.listSandboxes({ userId, ...filter }, 1, 100);
          assert.deepEqual(ids(page.sandboxes), wanted, JSON.stringify(filter));
          assert.equal(page.total, wanted.length, JSON.stringify(filter));
          assert.deepEqual(ids(await store.findSandboxes({ userId, ...filter }, 100)), wanted, JSON.stringify(filter));
        };
        await expect({ teamId }, (r) => r.teamId === teamId);
        await expect({ status: 'RUNNING' }, (r) => r.status === 'RUNNING');
        await expect({ status: 'PAUSED' }, (r) => r.status === 'PAUSED');
        await expect({ activeOnly: true }, (r) => !['ERROR', 'TERMINATED', 'TIMEOUT'].includes(r.status));
        await expect({ activeOnly: false }, () => true);
        await expect({ teamId, activeOnly: true }, (r) => r.teamId === teamId && !['ERROR', 'TERMINATED', 'TIMEOUT'].includes(r.status));
        await expect({ teamId, status: 'ERROR' }, (r) => r.teamId === teamId && r.status === 'ERROR');
        await expect({ status: 'ERROR', activeOnly: true }, () => false);

        // Team filter without a user sees every member's sandboxes in the team.
        const teamPage = await store.listSandboxes({ teamId }, 1, 100);
        assert.equal(teamPage.total, records.filter((r) => r.teamId === teamId).length + 1);
      });

      test('label filters match sandboxes carrying ALL the labels', async () => {
        const { userId, records } = await fixture();
        const expect = async (labels: string[]): Promise<void> => {
          const wanted = newestFirst(records.filter((r) => labels.every((l) => r.labels.includes(l))));
          const page = await store.listSandboxes({ userId, labels }, 1, 100);
          assert.deepEqual(ids(page.sandboxes), wanted, JSON.stringify(labels));
          assert.equal(page.total, wanted.length, JSON.stringify(labels));
          assert.deepEqual(ids(await store.findSandboxes({ userId, labels }, 100)), wanted, JSON.stringify(labels));
        };
        await expect([]);
        await expect(['a']);
        await expect(['b']);
        await expect(['a', 'b']);
        await expect(['b', 'a']);
        await expect(['a', 'b', 'c']);
        await expect(['c']);
        // Duplicates in the filter mean the same as one occurrence.
        await expect(['a', 'a']);
        await expect(['a', 'b', 'b', 'a']);
        // Case-sensitive, and LIKE metacharacters are literal.
        await expect(['A']);
        await expect(['%']);
        await expect(['_']);
        await expect(['nope']);
        await expect(['a', 'nope']);
        assert.equal((await store.listSandboxes({ userId, labels: ['a', 'a'] }, 1, 100)).total, 4);
      });

      test('filters by ids', async () => {
        const { userId, records } = await fixture();
        const [r0, r1, r2] = records as [SandboxRecord, SandboxRecord, SandboxRecord];
        const some = await store.listSandboxes({ ids: [r0.id, r2.id, unique('missing')] }, 1, 100);
        assert.deepEqual(ids(some.sandboxes), [r2.id, r0.id]);
        assert.equal(some.total, 2);
        const none = await store.listSandboxes({ ids: [] }, 1, 100);
        assert.deepEqual(none, { sandboxes: [], total: 0 });
        assert.deepEqual(await store.findSandboxes({ ids: [] }, 10), []);
        const combined = await store.listSandboxes({ ids: [r0.id, r1.id], userId, status: 'RUNNING' }, 1, 100);
        assert.deepEqual(ids(combined.sandboxes), [r1.id]);
        const otherUser = await store.listSandboxes({ ids: [r0.id], userId: unique('user') }, 1, 100);
        assert.equal(otherUser.total, 0);
      });

      test('an unknown user has nothing', async () => {
        assert.deepEqual(await store.listSandboxes({ userId: unique('user') }, 1, 10), { sandboxes: [], total: 0 });
      });

      test('paginates without gaps or duplicates, ties broken deterministically', async () => {
        const userId = unique('user');
        // 25 sandboxes; groups of five share a createdAt, so the order within a group comes from the id.
        const records = Array.from({ length: 25 }, (_, i) => sandbox({ userId, createdAt: at(Math.floor(i / 5)) }));
        await insertAll([...records].reverse());
        const all = await store.listSandboxes({ userId }, 1, 100);
        assert.equal(all.total, 25);
        const expected = [...records]
          .sort((x, y) => (x.createdAt === y.createdAt ? (x.id < y.id ? 1 : -1) : x.createdAt < y.createdAt ? 1 : -1))
          .map((r) => r.id);
        assert.deepEqual(ids(all.sandboxes), expected);

        const pages: string[][] = [];
        for (let page = 1; page <= 4; page++) {
          const result = await store.listSandboxes({ userId }, page, 10);
          assert.equal(result.total, 25);
          pages.push(ids(result.sandboxes));
        }
        assert.deepEqual(
          pages.map((p) => p.length),
          [10, 10, 5, 0],
        );
        assert.deepEqual(pages.flat(), expected);
        assert.deepEqual(ids((await store.listSandboxes({ userId }, 3, 7)).sandboxes), expected.slice(14, 21));
        assert.deepEqual(ids((await store.listSandboxes({ userId }, 1, 1)).sandboxes), expected.slice(0, 1));
      });

      test('findSandboxes honours the limit and the order', async () => {
        const userId = unique('user');
        const records = Array.from({ length: 7 }, (_, i) => sandbox({ userId, createdAt: at(i) }));
        await insertAll(records);
        const newest = newestFirst(records);
        assert.deepEqual(ids(await store.findSandboxes({ userId }, 3)), newest.slice(0, 3));
        assert.deepEqual(ids(await store.findSandboxes({ userId }, 100)), newest);
        assert.deepEqual(await store.findSandboxes({ userId }, 0), []);
      });
    });

    describe('sandboxes: updates', () => {
      test('applies a patch and leaves other fields alone', async () => {
        const original = sandbox({ labels: ['keep'], environmentVars: { A: 'b' }, errorMessage: 'old' });
        await insertAll([original]);
        const updated = await store.updateSandbox(original.id, {
          status: 'RUNNING',
          startedAt: at(5),
          runtimeDriver: 'docker',
          runtimeId: 'abc',
          timeoutMinutes: 90,
          idleTimeoutMinutes: 15,
          errorMessage: null,
        });
        assert.ok(updated);
        assert.notEqual(updated.updatedAt, original.updatedAt);
        assert.ok(updated.updatedAt > original.updatedAt);
        const expected: SandboxRecord = {
          ...original,
          status: 'RUNNING',
          startedAt: at(5),
          runtimeDriver: 'docker',
          runtimeId: 'abc',
          timeoutMinutes: 90,
          idleTimeoutMinutes: 15,
          errorMessage: null,
          updatedAt: updated.updatedAt,
        };
        assert.deepEqual(updated, expected);
        assert.deepEqual(await store.getSandbox(original.id), expected);

        const terminal = await store.updateSandbox(original.id, {
          status: 'ERROR',
          terminatedAt: at(9),
          terminationReason: 'oom',
          exitCode: 137,
          errorType: 'OOM_KILLED',
          errorMessage: 'out of memory',
          lastActivityAt: at(8),
        });
        assert.deepEqual(terminal, {
          ...expected,
          status: 'ERROR',
          terminatedAt: at(9),
          terminationReason: 'oom',
          exitCode: 137,
          errorType: 'OOM_KILLED',
          errorMessage: 'out of memory',
          lastActivityAt: at(8),
          updatedAt: terminal?.updatedAt,
        });
      });

      test('an empty patch only bumps updatedAt', async () => {
        const original = sandbox();
        await insertAll([original]);
        const updated = await store.updateSandbox(original.id, {});
        assert.deepEqual(updated, { ...original, updatedAt: updated?.updatedAt });
      });

      test('rewrites labels, and label filters follow', async () => {
        const userId = unique('user');
        const record = sandbox({ userId, labels: ['old', 'shared'] });
        await insertAll([record]);
        const updated = await store.updateSandbox(record.id, { labels: ['new', 'shared', 'new'] });
        assert.deepEqual(updated?.labels, ['new', 'shared', 'new']);
        assert.deepEqual(ids(await store.findSandboxes({ userId, labels: ['old'] }, 10)), []);
        assert.deepEqual(ids(await store.findSandboxes({ userId, labels: ['new'] }, 10)), [record.id]);
        assert.deepEqual(ids(await store.findSandboxes({ userId, labels: ['new', 'shared'] }, 10)), [record.id]);

        await store.updateSandbox(record.id, { labels: [] });
        assert.deepEqual((await store.getSandbox(record.id))?.labels, []);
        assert.deepEqual(ids(await store.findSandboxes({ userId, labels: ['shared'] }, 10)), []);

        // A patch without labels keeps them.
        await store.updateSandbox(record.id, { labels: ['kept'] });
        await store.updateSandbox(record.id, { status: 'RUNNING' });
        assert.deepEqual(ids(await store.findSandboxes({ userId, labels: ['kept'] }, 10)), [record.id]);
      });

      test('compare-and-set on expectStatus', async () => {
        const record = sandbox({ status: 'PENDING' });
        await insertAll([record]);
        assert.equal(await store.updateSandbox(record.id, { status: 'RUNNING', labels: ['x'] }, ['RUNNING', 'PAUSED']), undefined);
        assert.deepEqual(await store.getSandbox(record.id), record, 'a failed compare-and-set writes nothing');
        assert.deepEqual(ids(await store.findSandboxes({ userId: record.userId, labels: ['x'] }, 10)), []);
        assert.equal(await store.updateSandbox(record.id, { status: 'RUNNING' }, []), undefined);

        const moved = await store.updateSandbox(record.id, { status: 'PROVISIONING' }, ['PENDING', 'RUNNING']);
        assert.equal(moved?.status, 'PROVISIONING');
        assert.equal(await store.updateSandbox(record.id, { status: 'PROVISIONING' }, ['PENDING']), undefined);
        assert.equal((await store.getSandbox(record.id))?.status, 'PROVISIONING');
      });

      test('updating an unknown sandbox returns undefined', async () => {
        assert.equal(await store.updateSandbox(unique('missing'), { status: 'RUNNING' }), undefined);
        assert.equal(await store.updateSandbox(unique('missing'), { status: 'RUNNING' }, ['PENDING']), undefined);
      });

      test('concurrent compare-and-set: exactly one winner', async () => {
        const record = sandbox({ status: 'PENDING' });
        await insertAll([record]);
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            store.updateSandbox(record.id, { status: 'PROVISIONING', runtimeId: `rt-${i}` }, ['PENDING']),
          ),
        );
        const winners = results.filter((r): r is SandboxRecord => r !== undefined);
        assert.equal(winners.length, 1);
        assert.equal((await store.getSandbox(record.id))?.runtimeId, winners[0]?.runtimeId);
      });

      test('touchSandboxes sets lastActivityAt on exactly the given sandboxes', async () => {
        const [a, b, c] = [sandbox(), sandbox(), sandbox({ lastActivityAt: at(1) })];
        await insertAll([a, b, c]);
        await store.touchSandboxes([], at(50));
        await store.touchSandboxes([a.id, b.id, unique('missing')], at(60));
        assert.equal((await store.getSandbox(a.id))?.lastActivityAt, at(60));
        assert.equal((await store.getSandbox(b.id))?.lastActivityAt, at(60));
        assert.deepEqual(await store.getSandbox(c.id), c);
        await store.touchSandboxes([a.id], at(61));
        const touched = await store.getSandbox(a.id);
        assert.deepEqual(touched, { ...a, lastActivityAt: at(61), updatedAt: touched?.updatedAt });
      });

      test('touchSandboxes handles a large batch', async () => {
        const userId = unique('user');
        const records = Array.from({ length: 300 }, () => sandbox({ userId }));
        await Promise.all(records.map((r) => store.insertSandbox(r)));
        await store.touchSandboxes(ids(records), at(70));
        const all = await store.findSandboxes({ userId }, 1000);
        assert.equal(all.length, 300);
        assert.ok(all.every((s) => s.lastActivityAt === at(70)));
      });
    });

    describe('sandboxes: egress policy', () => {
      test('stores both lists (null = no list, [] kept apart from null) and the generations', async () => {
        const allow = sandbox({ networkAccess: true, networkAllowlist: ['*.example.test', '198.51.100.0/24'], egressGeneration: 1, egressAppliedGeneration: 0 });
        const none = sandbox({ networkAllowlist: [] });
        const deny = sandbox({ networkAccess: true, networkDenylist: ['evil.test'] });
        await insertAll([allow, none, deny]);
        const [a, n, d] = await Promise.all([allow, none, deny].map((s) => store.getSandbox(s.id)));
        assert.deepEqual([a?.networkAllowlist, a?.networkDenylist, a?.egressGeneration, a?.egressAppliedGeneration], [['*.example.test', '198.51.100.0/24'], null, 1, 0]);
        assert.deepEqual([n?.networkAllowlist, n?.networkDenylist], [[], null]);
        assert.deepEqual([d?.networkAllowlist, d?.networkDenylist], [null, ['evil.test']]);
      });

      test('setSandboxEgress replaces the lists and bumps the generation, only in the expected statuses', async () => {
        const s = sandbox({ networkAccess: true, status: 'RUNNING', networkAllowlist: ['a.test'] });
        await insertAll([s]);
        const seen: SandboxRecord[] = [];
        const stop = store.onSandboxUpdated((row) => row.id === s.id && seen.push(row));
        const first = await store.setSandboxEgress(s.id, { allowlist: null, denylist: ['b.test'] }, ['RUNNING']);
        assert.deepEqual([first?.networkAllowlist, first?.networkDenylist, first?.egressGeneration], [null, ['b.test'], 2]);
        const second = await store.setSandboxEgress(s.id, { allowlist: [], denylist: null }, ['RUNNING', 'PENDING']);
        assert.deepEqual([second?.networkAllowlist, second?.networkDenylist, second?.egressGeneration], [[], null, 3]);
        assert.equal(await store.setSandboxEgress(s.id, { allowlist: null, denylist: null }, ['TERMINATED']), undefined);
        assert.equal(await store.setSandboxEgress(unique('sb'), { allowlist: null, denylist: null }, ['RUNNING']), undefined);
        assert.equal((await store.getSandbox(s.id))?.egressGeneration, 3);
        stop();
        assert.deepEqual(seen.map((row) => row.egressGeneration), [2, 3]);
      });

      test('concurrent policy changes each bump the generation once', async () => {
        const s = sandbox({ networkAccess: true, status: 'RUNNING' });
        await insertAll([s]);
        await Promise.all(Array.from({ length: 8 }, (_, i) => store.setSandboxEgress(s.id, { allowlist: [`h${i}.test`], denylist: null }, ['RUNNING'])));
        assert.equal((await store.getSandbox(s.id))?.egressGeneration, 9);
      });

      test('markEgressApplied raises the applied generation and never lowers it', async () => {
        const s = sandbox({ networkAccess: true, status: 'RUNNING', egressGeneration: 5, egressAppliedGeneration: 0 });
        await insertAll([s]);
        assert.equal((await store.markEgressApplied(s.id, 4))?.egressAppliedGeneration, 4);
        assert.equal((await store.markEgressApplied(s.id, 2))?.egressAppliedGeneration, 4);
        assert.equal((await store.markEgressApplied(s.id, 5))?.egressAppliedGeneration, 5);
        assert.equal(await store.markEgressApplied(unique('sb'), 1), undefined);
        const patched = await store.updateSandbox(s.id, { egressAppliedGeneration: 6 });
        assert.equal(patched?.egressAppliedGeneration, 6);
      });
    });

    describe('users, teams and members', () => {
      test('users: insert, get, get by name, list, duplicate name', async () => {
        const admin = user({ email: 'admin@example.com', isAdmin: true, createdAt: at(1) });
        const plain = user({ createdAt: at(2) });
        await store.insertUser(plain);
        await store.insertUser(admin);
        assert.deepEqual(await store.getUser(admin.id), admin);
        assert.deepEqual(await store.getUser(plain.id), plain);
        assert.deepEqual(await store.getUserByName(admin.name), admin);
        assert.equal(await store.getUser(unique('missing')), undefined);
        assert.equal(await store.getUserByName(unique('missing')), undefined);
        const listed = (await store.listUsers()).filter((u) => u.id === admin.id || u.id === plain.id);
        assert.deepEqual(listed, [admin, plain], 'ordered by createdAt');
        await assert.rejects(store.insertUser({ ...user(), name: admin.name }));
        await assert.rejects(store.insertUser({ ...admin, name: unique('other') }));
      });

      test('teams: insert, get, get by name, list, duplicate name', async () => {
        const t1 = team({ createdAt: at(3) });
        const t2 = team({ createdAt: at(1) });
        await store.insertTeam(t1);
        await store.insertTeam(t2);
        assert.deepEqual(await store.getTeam(t1.id), t1);
        assert.deepEqual(await store.getTeamByName(t2.name), t2);
        assert.equal(await store.getTeam(unique('missing')), undefined);
        assert.equal(await store.getTeamByName(unique('missing')), undefined);
        const listed = (await store.listTeams()).filter((t) => t.id === t1.id || t.id === t2.id);
        assert.deepEqual(listed, [t2, t1]);
        await assert.rejects(store.insertTeam({ ...team(), name: t1.name }));
      });

      test('members: upsert adds and changes the role, memberships, removal', async () => {
        const [alice, bob] = [user(), user()];
        const [t1, t2] = [team(), team()];
        await store.insertUser(alice);
        await store.insertUser(bob);
        await store.insertTeam(t1);
        await store.insertTeam(t2);

        await store.upsertTeamMember({ teamId: t1.id, userId: alice.id, role: 'admin', createdAt: at(1) });
        await store.upsertTeamMember({ teamId: t1.id, userId: bob.id, role: 'member', createdAt: at(2) });
        await store.upsertTeamMember({ teamId: t2.id, userId: bob.id, role: 'admin', createdAt: at(3) });
        assert.deepEqual(await store.listTeamMembers(t1.id), [
          { teamId: t1.id, userId: alice.id, role: 'admin', createdAt: at(1) },
          { teamId: t1.id, userId: bob.id, role: 'member', createdAt: at(2) },
        ]);

        // Changing the role keeps one row and the original createdAt.
        await store.upsertTeamMember({ teamId: t1.id, userId: bob.id, role: 'admin', createdAt: at(9) });
        assert.deepEqual(await store.listTeamMembers(t1.id), [
          { teamId: t1.id, userId: alice.id, role: 'admin', createdAt: at(1) },
          { teamId: t1.id, userId: bob.id, role: 'admin', createdAt: at(2) },
        ]);

        const memberships = (await store.listMemberships(bob.id)).sort((x, y) => x.createdAt.localeCompare(y.createdAt));
        assert.deepEqual(memberships, [
          { teamId: t1.id, userId: bob.id, role: 'admin', createdAt: at(2) },
          { teamId: t2.id, userId: bob.id, role: 'admin', createdAt: at(3) },
        ]);
        assert.deepEqual(await store.listMemberships(unique('missing')), []);
        assert.deepEqual(await store.listTeamMembers(unique('missing')), []);

        assert.equal(await store.removeTeamMember(t1.id, bob.id), true);
        assert.equal(await store.removeTeamMember(t1.id, bob.id), false);
        assert.deepEqual(
          (await store.listTeamMembers(t1.id)).map((m) => m.userId),
          [alice.id],
        );
      });

      test('members must reference existing users and teams', async () => {
        const alice = user();
        const t = team();
        await store.insertUser(alice);
        await store.insertTeam(t);
        await assert.rejects(store.upsertTeamMember({ teamId: t.id, userId: unique('ghost'), role: 'member', createdAt: at(0) }));
        await assert.rejects(store.upsertTeamMember({ teamId: unique('ghost'), userId: alice.id, role: 'member', createdAt: at(0) }));
      });

      test('deleting a user removes its memberships and API keys', async () => {
        const [alice, bob] = [user(), user()];
        const t = team();
        await store.insertUser(alice);
        await store.insertUser(bob);
        await store.insertTeam(t);
        await store.upsertTeamMember({ teamId: t.id, userId: alice.id, role: 'admin', createdAt: at(0) });
        await store.upsertTeamMember({ teamId: t.id, userId: bob.id, role: 'member', createdAt: at(1) });
        const aliceKey = apiKey(alice.id);
        const bobKey = apiKey(bob.id);
        await store.insertApiKey(aliceKey);
        await store.insertApiKey(bobKey);
        const owned = sandbox({ userId: alice.id });
        await insertAll([owned]);

        assert.equal(await store.deleteUser(alice.id), true);
        assert.equal(await store.deleteUser(alice.id), false);
        assert.equal(await store.getUser(alice.id), undefined);
        assert.equal(await store.getUserByName(alice.name), undefined);
        assert.deepEqual(await store.listMemberships(alice.id), []);
        assert.deepEqual(
          (await store.listTeamMembers(t.id)).map((m) => m.userId),
          [bob.id],
        );
        assert.equal(await store.getApiKeyByHash(aliceKey.keyHash), undefined);
        assert.deepEqual(await store.listApiKeys(alice.id), []);
        assert.deepEqual(await store.getApiKeyByHash(bobKey.keyHash), bobKey);
        // Sandboxes are history: they outlive their owner's account.
        assert.deepEqual(await store.getSandbox(owned.id), owned);
        // The name is free again.
        await store.insertUser({ ...user(), name: alice.name });
      });

      test('deleting a team removes its memberships only', async () => {
        const alice = user();
        const [t1, t2] = [team(), team()];
        await store.insertUser(alice);
        await store.insertTeam(t1);
        await store.insertTeam(t2);
        await store.upsertTeamMember({ teamId: t1.id, userId: alice.id, role: 'member', createdAt: at(0) });
        await store.upsertTeamMember({ teamId: t2.id, userId: alice.id, role: 'member', createdAt: at(1) });
        assert.equal(await store.deleteTeam(t1.id), true);
        assert.equal(await store.deleteTeam(t1.id), false);
        assert.equal(await store.getTeam(t1.id), undefined);
        assert.deepEqual(await store.listTeamMembers(t1.id), []);
        assert.deepEqual(
          (await store.listMemberships(alice.id)).map((m) => m.teamId),
          [t2.id],
        );
        assert.deepEqual(await store.getUser(alice.id), alice);
      });
    });

    describe('API keys', () => {
      test('insert, get by id and hash, list', async () => {
        const [alice, bob] = [user(), user()];
        await store.insertUser(alice);
        await store.insertUser(bob);
        const k1 = apiKey(alice.id, { createdAt: at(2), name: 'ci' });
        const k2 = apiKey(alice.id, { createdAt: at(1), lastUsedAt: at(5), revokedAt: at(6) });
        const k3 = apiKey(bob.id, { createdAt: at(0) });
        for (const k of [k1, k2, k3]) await store.insertApiKey(k);
        assert.deepEqual(await store.getApiKey(k1.id), k1);
        assert.deepEqual(await store.getApiKey(k2.id), k2);
        assert.deepEqual(await store.getApiKeyByHash(k3.keyHash), k3);
        assert.equal(await store.getApiKey(unique('missing')), undefined);
        assert.equal(await store.getApiKeyByHash(unique('missing')), undefined);
        assert.deepEqual(await store.listApiKeys(alice.id), [k2, k1]);
        assert.deepEqual(await store.listApiKeys(bob.id), [k3]);
        const everyone = (await store.listApiKeys()).filter((k) => [k1.id, k2.id, k3.id].includes(k.id));
        assert.deepEqual(everyone, [k3, k2, k1]);
      });

      test('a key hash is unique and a key needs an existing user', async () => {
        const alice = user();
        await store.insertUser(alice);
        const k = apiKey(alice.id);
        await store.insertApiKey(k);
        await assert.rejects(store.insertApiKey({ ...apiKey(alice.id), keyHash: k.keyHash }));
        await assert.rejects(store.insertApiKey(apiKey(unique('ghost'))));
      });

      test('revoke happens once; markUsed records the time', async () => {
        const alice = user();
        await store.insertUser(alice);
        const k = apiKey(alice.id);
        await store.insertApiKey(k);
        await store.markApiKeyUsed(k.id, at(10));
        assert.equal((await store.getApiKey(k.id))?.lastUsedAt, at(10));
        assert.equal(await store.revokeApiKey(k.id, at(11)), true);
        assert.equal(await store.revokeApiKey(k.id, at(12)), false);
        assert.equal(await store.revokeApiKey(unique('missing'), at(12)), false);
        assert.deepEqual(await store.getApiKeyByHash(k.keyHash), { ...k, lastUsedAt: at(10), revokedAt: at(11) });
        await store.markApiKeyUsed(k.id, at(13));
        assert.equal((await store.getApiKey(k.id))?.lastUsedAt, at(13));
        await store.markApiKeyUsed(unique('missing'), at(13));
      });
    });

    describe('concurrency', () => {
      test('200 parallel inserts all commit', async () => {
        const userId = unique('user');
        const records = Array.from({ length: 200 }, (_, i) =>
          sandbox({ userId, labels: [`l${i % 3}`], createdAt: at(i), idempotencyKey: i % 2 === 0 ? unique('idem') : null }),
        );
        const results = await Promise.all(records.map((r) => store.insertSandbox(r)));
        assert.ok(results.every((r) => r.created));
        const { sandboxes, total } = await store.listSandboxes({ userId }, 1, 500);
        assert.equal(total, 200);
        assert.deepEqual(sortedIds(sandboxes), sortedIds(records));
        assert.equal((await store.listSandboxes({ userId, labels: ['l0'] }, 1, 1)).total, 67);
      });

      test('20 parallel inserts with one idempotency key create exactly one sandbox', async () => {
        const userId = unique('user');
        const key = unique('idem');
        const records = Array.from({ length: 20 }, () => sandbox({ userId, idempotencyKey: key, labels: ['x'] }));
        const results = await Promise.all(records.map((r) => store.insertSandbox(r)));
        const created = results.filter((r) => r.created);
        assert.equal(created.length, 1);
        const winner = created[0]?.sandbox;
        assert.ok(winner);
        assert.ok(results.every((r) => r.sandbox.id === winner.id));
        assert.deepEqual(await store.getSandbox(winner.id), winner);
        assert.equal((await store.listSandboxes({ userId }, 1, 100)).total, 1);
        assert.equal((await store.listSandboxes({ userId, labels: ['x'] }, 1, 100)).total, 1);
      });

      test('two connections (replicas) racing on one idempotency key create one sandbox', async (t) => {
        if (store.kind !== 'postgres') {
          // One SQLite file is served by one process; two connections in one event loop would
          // only measure better-sqlite3's synchronous busy wait.
          t.skip('PostgreSQL only: SQLite is single-process');
          return;
        }
        const replica = await open();
        try {
          await replica.migrate();
          const userId = unique('user');
          const key = unique('idem');
          const records = Array.from({ length: 20 }, () => sandbox({ userId, idempotencyKey: key }));
          const results = await Promise.all(records.map((r, i) => (i % 2 === 0 ? store : replica).insertSandbox(r)));
          assert.equal(results.filter((r) => r.created).length, 1);
          assert.equal(new Set(results.map((r) => r.sandbox.id)).size, 1);
          const seen = await replica.getSandbox(results[0]?.sandbox.id ?? '');
          assert.deepEqual(seen, results[0]?.sandbox);
        } finally {
          await replica.close();
        }
      });
    });

    describe('replicas: heartbeats, leases and provisioning claims', () => {
      const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

      test('a heartbeat makes a replica live for its lease; it lapses unrenewed, and removal ends it at once', async () => {
        const instance = unique('deploy');
        const [a, b] = [unique('replica'), unique('replica')];
        await store.heartbeatReplica(a, instance, 60_000);
        await store.heartbeatReplica(b, instance, 300);
        await store.heartbeatReplica(unique('replica'), unique('other-deploy'), 60_000);
        assert.deepEqual(await store.liveReplicas(instance), [a, b].sort());
        await sleep(450);
        assert.deepEqual(await store.liveReplicas(instance), [a], 'b lapsed');
        await store.heartbeatReplica(b, instance, 60_000);
        assert.deepEqual(await store.liveReplicas(instance), [a, b].sort(), 'a renewal brings it back');
        await store.removeReplica(a);
        assert.deepEqual(await store.liveReplicas(instance), [b]);
      });

      test('a lease has one holder until it lapses; the holder renews it, another takes it over after', async () => {
        const name = unique('lease');
        const [a, b] = [unique('replica'), unique('replica')];
        assert.equal(await store.acquireLease(name, a, 300), true);
        assert.equal(await store.acquireLease(name, b, 300), false, 'held by a');
        assert.equal(await store.acquireLease(name, a, 300), true, 'a renews');
        await sleep(450);
        assert.equal(await store.acquireLease(name, b, 60_000), true, 'lapsed: b takes it');
        assert.equal(await store.acquireLease(name, a, 60_000), false, 'now held by b');
        await store.releaseLease(name, a);
        assert.equal(await store.acquireLease(name, a, 60_000), false, 'only the holder releases');
        await store.releaseLease(name, b);
        assert.equal(await store.acquireLease(name, a, 60_000), true, 'released: free at once');
      });

      test("replicas are listed per host with their pid; removing one gives its leases up", async () => {
        const instance = unique('deploy');
        const [a, b, c] = [unique('replica'), unique('replica'), unique('replica')];
        await store.heartbeatReplica(a, instance, 60_000, { host: 'h1', pid: 11 });
        await store.heartbeatReplica(b, instance, 60_000, { host: 'h1', pid: 12 });
        await store.heartbeatReplica(c, instance, 60_000, { host: 'h2', pid: 11 });
        assert.deepEqual(await store.liveReplicasOn(instance, 'h1'), [{ id: a, pid: 11 }, { id: b, pid: 12 }].sort((x, y) => x.id.localeCompare(y.id)));
        const lease = unique('lease');
        assert.equal(await store.acquireLease(lease, a, 60_000), true);
        await store.removeReplica(a);
        assert.deepEqual((await store.liveReplicasOn(instance, 'h1')).map((r) => r.id), [b]);
        assert.equal(await store.acquireLease(lease, b, 60_000), true, "a's lease went with it");
      });

      test('of many replicas racing for one free lease, exactly one gets it', async () => {
        const name = unique('lease');
        const contenders = Array.from({ length: 8 }, () => unique('replica'));
        const second = store.kind === 'postgres' ? await open() : store;
        try {
          const won = await Promise.all(contenders.map((c, i) => (i % 2 === 0 ? store : second).acquireLease(name, c, 60_000)));
          assert.equal(won.filter(Boolean).length, 1, `winners: ${JSON.stringify(won)}`);
        } finally {
          if (second !== store) await second.close();
        }
      });

      test('a provisioning claim is exclusive while its holder is live, and adopted (compare-and-set) once its heartbeat lapses', async () => {
        const instance = unique('deploy');
        const [a, b] = [unique('replica'), unique('replica')];
        await store.heartbeatReplica(a, instance, 400);
        await store.heartbeatReplica(b, instance, 60_000);
        const row = sandbox({ status: 'PENDING', provisioner: a });
        await store.insertSandbox(row);
        assert.equal(await store.claimProvisioning(row.id, b), undefined, 'a is live');
        const mine = await store.claimProvisioning(row.id, a, { status: 'PROVISIONING' });
        assert.equal(mine?.provisioner, a, 'the holder re-claims');
        assert.equal(mine?.status, 'PROVISIONING', 'with its patch');
        // Writes fenced on the claim: only the holder's pass.
        assert.equal(await store.updateSandbox(row.id, { errorMessage: 'x' }, ['PROVISIONING'], b), undefined);
        assert.ok(await store.updateSandbox(row.id, { errorMessage: 'y' }, ['PROVISIONING'], a));
        await sleep(550);
        const adopted = await store.claimProvisioning(row.id, b);
        assert.equal(adopted?.provisioner, b, 'a lapsed: b adopts');
        assert.equal(await store.updateSandbox(row.id, { status: 'RUNNING' }, ['PROVISIONING'], a), undefined, 'a can no longer finish it');
        await store.heartbeatReplica(a, instance, 60_000);
        assert.equal(await store.claimProvisioning(row.id, a), undefined, 'a is back, but b holds it now');
        const unclaimed = sandbox({ status: 'PENDING', provisioner: null });
        await store.insertSandbox(unclaimed);
        assert.equal((await store.claimProvisioning(unclaimed.id, a))?.provisioner, a, 'nobody held it');
        const running = sandbox({ status: 'RUNNING', provisioner: null });
        await store.insertSandbox(running);
        assert.equal(await store.claimProvisioning(running.id, a), undefined, 'only starting sandboxes are claimed');
        assert.equal(await store.claimProvisioning(unique('missing'), a), undefined);
      });

      test('replicas racing to adopt one lapsed claim: exactly one wins', async () => {
        const instance = unique('deploy');
        const dead = unique('replica');
        await store.heartbeatReplica(dead, instance, 1);
        const contenders = Array.from({ length: 8 }, () => unique('replica'));
        for (const c of contenders) await store.heartbeatReplica(c, instance, 60_000);
        const rows = Array.from({ length: 5 }, () => sandbox({ status: 'PROVISIONING', provisioner: dead }));
        await insertAll(rows);
        await sleep(20);
        const second = store.kind === 'postgres' ? await open() : store;
        try {
          for (const row of rows) {
            const claims = await Promise.all(contenders.map((c, i) => (i % 2 === 0 ? store : second).claimProvisioning(row.id, c)));
            const winners = claims.filter((c) => c !== undefined);
            assert.equal(winners.length, 1, `one winner for ${row.id}`);
            assert.equal((await store.getSandbox(row.id))?.provisioner, winners[0]?.provisioner);
          }
        } finally {
          if (second !== store) await second.close();
        }
      });
    });

    describe('ownership, retention and registry credentials', () => {
      test('runtimeOwner round-trips, filters and can be patched', async () => {
        const owner = unique('instance');
        const mine = sandbox({ runtimeOwner: owner });
        const other = sandbox({ runtimeOwner: unique('instance'), userId: mine.userId });
        await store.insertSandbox(mine);
        await store.insertSandbox(other);
        assert.equal((await store.getSandbox(mine.id))?.runtimeOwner, owner);
        assert.deepEqual((await store.findSandboxes({ runtimeOwner: owner }, 10)).map((s) => s.id), [mine.id]);
        const moved = await store.updateSandbox(other.id, { runtimeOwner: owner });
        assert.equal(moved?.runtimeOwner, owner);
        assert.equal((await store.findSandboxes({ runtimeOwner: owner }, 10)).length, 2);
      });

      test('updatedSince finds the rows written (inserted or patched) at or after a time, not the touched ones', async () => {
        const owner = unique('instance');
        const old = sandbox({ runtimeOwner: owner, createdAt: at(1), updatedAt: at(1) });
        const touched = sandbox({ runtimeOwner: owner, createdAt: at(2), updatedAt: at(2) });
        const patched = sandbox({ runtimeOwner: owner, createdAt: at(3), updatedAt: at(3) });
        await insertAll([old, touched, patched]);
        const since = new Date().toISOString();
        await store.touchSandboxes([touched.id], new Date().toISOString());
        await store.updateSandbox(patched.id, { status: 'TERMINATED' });
        assert.deepEqual(ids(await store.findSandboxes({ runtimeOwner: owner, updatedSince: since }, 10)), [patched.id]);
        assert.deepEqual(sortedIds(await store.findSandboxes({ runtimeOwner: owner, updatedSince: at(2) }, 10)), [patched.id, touched.id].sort());
      });

      test('purgeEndedSandboxes deletes only ended rows older than the cutoff, labels included', async () => {
        const userId = unique('user');
        const old = sandbox({ userId, status: 'TERMINATED', terminatedAt: '2000-01-01T00:00:00.000Z', labels: ['purge-me'] });
        const fresh = sandbox({ userId, status: 'TIMEOUT', terminatedAt: '2999-01-01T00:00:00.000Z' });
        const live = sandbox({ userId, status: 'RUNNING', terminatedAt: null });
        for (const s of [old, fresh, live]) await store.insertSandbox(s);
        let purged = 0;
        for (let i = 0; i < 1000 && (await store.getSandbox(old.id)); i += 1) {
          purged += await store.purgeEndedSandboxes('2001-01-01T00:00:00.000Z', 100);
        }
        assert.ok(purged >= 1);
        assert.equal(await store.getSandbox(old.id), undefined);
        assert.ok(await store.getSandbox(fresh.id));
        assert.ok(await store.getSandbox(live.id));
        assert.equal((await store.listSandboxes({ userId, labels: ['purge-me'] }, 1, 10)).total, 0);
      });

      test('sandbox events: insert in batches, list in id order after a cursor, purged with their sandbox', async () => {
        const userId = unique('user');
        const ended = sandbox({ userId, status: 'TERMINATED', terminatedAt: '2000-01-01T00:00:00.000Z' });
        const live = sandbox({ userId, status: 'RUNNING', terminatedAt: null });
        for (const s of [ended, live]) await store.insertSandbox(s);
        const event = (sandboxId: string, i: number): SandboxEventRecord => ({
          id: `${sandboxId}e${String(i).padStart(6, '0')}`,
          sandboxId,
          at: '2020-01-01T00:00:00.000Z',
          type: 'exec',
          actor: i % 2 === 0 ? { userId, keyId: 'key-1' } : null,
          data: { command: `echo ${i}`, exitCode: i, nested: { ok: true } },
        });
        const many = Array.from({ length: 1203 }, (_, i) => event(ended.id, i));
        await store.insertSandboxEvents(many);
        await store.insertSandboxEvents([event(live.id, 1)]);
        const first = await store.listSandboxEvents(ended.id, null, 3);
        assert.deepEqual(first, many.slice(0, 3));
        const page = await store.listSandboxEvents(ended.id, many[1199]?.id ?? null, 10);
        assert.deepEqual(page.map((e) => e.id), many.slice(1200).map((e) => e.id));
        assert.deepEqual(await store.listSandboxEvents(live.id, null, 10), [event(live.id, 1)]);
        for (let i = 0; i < 1000 && (await store.getSandbox(ended.id)); i += 1) await store.purgeEndedSandboxes('2001-01-01T00:00:00.000Z', 100);
        assert.deepEqual(await store.listSandboxEvents(ended.id, null, 10), []);
        assert.equal((await store.listSandboxEvents(live.id, null, 10)).length, 1);
      });

      test('countActiveSandboxes counts one deployment\'s active rows by status and driver', async () => {
        const owner = unique('owner');
        const rows = [
          sandbox({ runtimeOwner: owner, status: 'RUNNING', runtimeDriver: 'oci' }),
          sandbox({ runtimeOwner: owner, status: 'RUNNING', runtimeDriver: 'oci' }),
          sandbox({ runtimeOwner: owner, status: 'PENDING', runtimeDriver: null }),
          sandbox({ runtimeOwner: owner, status: 'TERMINATED', runtimeDriver: 'oci', terminatedAt: '2999-01-01T00:00:00.000Z' }),
          sandbox({ runtimeOwner: unique('other'), status: 'RUNNING', runtimeDriver: 'oci' }),
        ];
        for (const row of rows) await store.insertSandbox(row);
        const counts = (await store.countActiveSandboxes(owner)).sort((a, b) => a.status.localeCompare(b.status));
        assert.deepEqual(counts, [
          { status: 'PENDING', driver: 'none', count: 1 },
          { status: 'RUNNING', driver: 'oci', count: 2 },
        ]);
      });

      test('registry credentials: insert, get, list by user and team, delete', async () => {
        const user: UserRecord = { id: unique('u'), name: unique('cred-user'), email: null, isAdmin: false, createdAt: '2020-01-01T00:00:00.000Z' };
        const other: UserRecord = { ...user, id: unique('u'), name: unique('cred-other') };
        await store.insertUser(user);
        await store.insertUser(other);
        const teamId = unique('team');
        const base = { server: '127.0.0.1:5001', username: 'corral', password: 'secret', createdAt: '2020-01-01T00:00:00.000Z', updatedAt: '2020-01-01T00:00:00.000Z' };
        const own = { ...base, id: unique('cred'), userId: user.id, teamId: null, name: 'own' };
        const shared = { ...base, id: unique('cred'), userId: other.id, teamId, name: 'team' };
        const foreign = { ...base, id: unique('cred'), userId: other.id, teamId: null, name: 'foreign' };
        for (const c of [own, shared, foreign]) await store.insertRegistryCredential(c);
        assert.deepEqual(await store.getRegistryCredential(own.id), own);
        assert.deepEqual((await store.listRegistryCredentials(user.id, [])).map((c) => c.id), [own.id]);
        assert.deepEqual((await store.listRegistryCredentials(user.id, [teamId])).map((c) => c.id).sort(), [own.id, shared.id].sort());
        assert.equal(await store.deleteRegistryCredential(own.id), true);
        assert.equal(await store.deleteRegistryCredential(own.id), false);
        assert.equal(await store.getRegistryCredential(own.id), undefined);
      });

      test('image builds and artifacts: insert, compare-and-set updates, per-owner listing and paging, search, replace, delete', async () => {
        const userId = unique('u');
        const teamId = unique('team');
        const build = (overrides: Partial<ImageBuildRecord>): ImageBuildRecord => ({
          id: unique('b'),
          userId,
          teamId: null,
          imageName: 'app',
          imageTag: 'v1',
          dockerfilePath: 'Dockerfile',
          fullImagePath: `corral.local/${userId}/app:v1`,
          status: 'PENDING',
          visibility: 'PRIVATE',
          contextBytes: null,
          failedStep: null,
          errorMessage: null,
          createdAt: '2020-01-01T00:00:00.000Z',
          startedAt: null,
          completedAt: null,
          replicaId: null,
          ...overrides,
        });
        const first = build({});
        const second = build({ createdAt: '2020-01-02T00:00:00.000Z', imageTag: 'v2', visibility: 'PUBLIC' });
        const team = build({ teamId, createdAt: '2020-01-03T00:00:00.000Z' });
        for (const b of [first, second, team]) await store.insertImageBuild(b);
        assert.deepEqual(await store.getImageBuild(first.id), first);
        const big = 6 * 1024 ** 3;
        assert.equal((await store.updateImageBuild(first.id, { contextBytes: big }, ['PENDING']))?.contextBytes, big);
        const started = await store.updateImageBuild(first.id, { status: 'BUILDING', startedAt: '2020-01-01T00:00:01.000Z' }, ['PENDING']);
        assert.equal(started?.status, 'BUILDING');
        assert.equal(await store.updateImageBuild(first.id, { status: 'BUILDING' }, ['PENDING']), undefined, 'compare-and-set on the status');
        const failed = await store.updateImageBuild(first.id, { status: 'FAILED', failedStep: 'STEP 2/2: RUN false', errorMessage: 'tail' });
        assert.deepEqual([failed?.status, failed?.failedStep, failed?.errorMessage], ['FAILED', 'STEP 2/2: RUN false', 'tail']);
        assert.equal((await store.updateImageBuild(second.id, { replicaId: 'host-1' }))?.replicaId, 'host-1');
        const pending = (await store.listImageBuildsByStatus(['PENDING'])).map((b) => b.id);
        assert.ok(pending.includes(second.id) && pending.includes(team.id) && !pending.includes(first.id));
        const personal = await store.listImageBuilds(userId, null, { offset: 0, limit: 1 });
        assert.equal(personal.total, 2);
        assert.deepEqual(personal.rows.map((b) => b.id), [second.id], 'newest first');
        assert.deepEqual((await store.listImageBuilds(userId, teamId, { offset: 0, limit: 10 })).rows.map((b) => b.id), [team.id]);

        const artifact = (overrides: Partial<ImageArtifactRecord>): ImageArtifactRecord => ({
          id: unique('a'),
          userId,
          teamId: null,
          imageName: 'app',
          imageTag: 'v1',
          fullImagePath: `corral.local/${userId}/app:v1`,
          runtimeRef: 'sha256:' + 'a'.repeat(64),
          visibility: 'PRIVATE',
          sizeBytes: big,
          buildId: second.id,
          createdAt: '2020-01-01T00:00:00.000Z',
          pushedAt: '2020-01-01T00:00:00.000Z',
          ...overrides,
        });
        const app = artifact({});
        const percent = artifact({ imageName: 'my_%app', fullImagePath: `corral.local/${userId}/my_%app:v1` });
        await store.putImageArtifact(app);
        await store.putImageArtifact(percent);
        assert.deepEqual(await store.getImageArtifactByPath(app.fullImagePath), app);
        const replaced = artifact({ runtimeRef: 'sha256:' + 'b'.repeat(64) });
        await store.putImageArtifact(replaced);
        assert.deepEqual(await store.getImageArtifactByPath(app.fullImagePath), replaced, 'same path: replaced');
        assert.equal((await store.listImageArtifacts(userId, null, { offset: 0, limit: 10, search: null })).total, 2);
        assert.deepEqual((await store.listImageArtifacts(userId, null, { offset: 0, limit: 10, search: '_%' })).rows.map((a) => a.id), [percent.id], 'LIKE wildcards are literal');
        assert.deepEqual((await store.listImageArtifacts(userId, teamId, { offset: 0, limit: 10, search: null })).rows, []);
        assert.equal(await store.deleteImageArtifact(replaced.id), true);
        assert.equal(await store.deleteImageArtifact(replaced.id), false);
        assert.equal(await store.getImageArtifactByPath(app.fullImagePath), undefined);
      });

      test('network: exposures, ssh sessions and keys go when their sandbox ends; tunnels list, update, expire', async () => {
        const live = sandbox({ status: 'RUNNING' });
        const ended = sandbox({ status: 'RUNNING' });
        await store.insertSandbox(live);
        await store.insertSandbox(ended);
        const at = '2020-01-01T00:00:00.000Z';
        const exposure = (sandboxId: string, protocol: 'HTTP' | 'TCP' = 'HTTP') => ({
          id: unique('exp'), sandboxId, userId: live.userId, port: 8000, name: null, protocol, externalPort: protocol === 'TCP' ? 30001 : null, accessToken: null, createdAt: at,
        });
        const keep = exposure(live.id, 'TCP');
        const gone = exposure(ended.id);
        const orphan = exposure(unique('missing-sandbox'));
        for (const e of [keep, gone, orphan]) await store.insertExposure(e);
        assert.deepEqual(await store.getExposure(keep.id), keep);
        assert.deepEqual((await store.listExposures([live.id, ended.id])).map((e) => e.id).sort(), [keep.id, gone.id].sort());
        assert.deepEqual(await store.listExposures([]), []);
        const session = (sandboxId: string, expiresAt: string) => ({
          id: unique('ssh'), sandboxId, userId: live.userId, exposureId: unique('exp'), ttlSeconds: 900, createdAt: at, expiresAt, apiKeyId: null,
        });
        const activeSession = session(live.id, '2999-01-01T00:00:00.000Z');
        const expiredSession = session(live.id, '2001-01-01T00:00:00.000Z');
        const endedSession = session(ended.id, '2999-01-01T00:00:00.000Z');
        for (const x of [activeSession, expiredSession, endedSession]) await store.insertSshSession(x);
        await store.upsertSshKey({ sessionId: activeSession.id, publicKey: 'ssh-ed25519 AAAA one', expiresAt: '2001-01-01T00:00:00.000Z' });
        await store.upsertSshKey({ sessionId: activeSession.id, publicKey: 'ssh-ed25519 AAAA one', expiresAt: '2999-01-01T00:00:00.000Z' });
        await store.upsertSshKey({ sessionId: endedSession.id, publicKey: 'ssh-ed25519 AAAA two', expiresAt: '2999-01-01T00:00:00.000Z' });
        assert.deepEqual((await store.listSshKeys(activeSession.id, '2020-01-01T00:00:00.000Z')).map((k) => k.publicKey), ['ssh-ed25519 AAAA one']);

        await store.updateSandbox(ended.id, { status: 'TERMINATED', terminatedAt: at });
        const purged = await store.purgeNetworkOfEndedSandboxes('2020-01-01T00:00:00.000Z');
        assert.ok(purged.exposureIds.includes(gone.id) && purged.exposureIds.includes(orphan.id) && !purged.exposureIds.includes(keep.id));
        assert.ok(purged.sshSessionIds.includes(expiredSession.id) && purged.sshSessionIds.includes(endedSession.id));
        assert.ok(!purged.sshSessionIds.includes(activeSession.id));
        assert.equal(await store.getExposure(gone.id), undefined);
        assert.equal(await store.getSshSession(endedSession.id), undefined);
        assert.deepEqual(await store.listSshKeys(endedSession.id, at), []);
        assert.deepEqual(await store.getSshSession(activeSession.id), activeSession);
        assert.equal(await store.deleteExposure(keep.id), true);
        assert.equal(await store.deleteExposure(keep.id), false);
        assert.equal(await store.deleteSshSession(activeSession.id), true);
        assert.deepEqual(await store.listSshKeys(activeSession.id, at), []);

        const userId = unique('tunnel-user');
        const tunnel = (labels: string[], createdAt: string) => ({
          id: unique('t'), userId, teamId: null, name: null, localPort: 8765, labels, httpUser: null, httpPasswordHash: null,
          bindingSecretHash: 'x', status: 'pending' as const, createdAt, connectedAt: null, expiresAt: '2999-01-01T00:00:00.000Z', terminatedAt: null,
          apiKeyId: null,
        });
        const older = tunnel(['a', 'b'], '2020-01-01T00:00:00.000Z');
        const newer = { ...tunnel(['a'], '2020-01-02T00:00:00.000Z'), expiresAt: '2001-01-01T00:00:00.000Z' };
        await store.insertTunnel(older);
        await store.insertTunnel(newer);
        assert.deepEqual(await store.getTunnel(older.id), older);
        const page = await store.listTunnels({ userId }, 1, 1);
        assert.equal(page.total, 2);
        assert.deepEqual(page.tunnels.map((t) => t.id), [newer.id]);
        assert.deepEqual((await store.listTunnels({ userId, labels: ['b'] }, 1, 10)).tunnels.map((t) => t.id), [older.id]);
        const connected = await store.updateTunnel(older.id, { status: 'connected', connectedAt: at });
        assert.equal(connected?.status, 'connected');
        assert.equal(connected?.connectedAt, at);
        assert.ok((await store.expireTunnels('2020-06-01T00:00:00.000Z')).includes(newer.id));
        assert.equal((await store.getTunnel(newer.id))?.status, 'expired');
        assert.deepEqual((await store.listTunnels({ userId, status: 'expired' }, 1, 10)).tunnels.map((t) => t.id), [newer.id]);
        assert.equal(await store.deleteTunnel(older.id), true);
        assert.equal(await store.deleteTunnel(older.id), false);
      });
    });

    describe('webhooks', () => {
      function delivery(endpointId: string, overrides: Partial<WebhookDeliveryRecord> = {}): WebhookDeliveryRecord {
        const id = unique('whd');
        return {
          id,
          endpointId,
          eventId: unique('ev'),
          eventType: 'exec',
          payload: '{"a":1}',
          status: 'pending',
          attempts: 0,
          attemptLog: [],
          lastStatusCode: null,
          lastError: null,
          nextAttemptAt: at(0),
          claimedBy: null,
          deliveredAt: null,
          createdAt: at(0),
          ...overrides,
        };
      }

      test('endpoints round-trip; listing and matching by owner; delete takes the deliveries', async () => {
        const userId = unique('user');
        const teamId = unique('team');
        const mine: WebhookEndpointRecord = { id: unique('wh'), userId, teamId: null, url: 'https://example.com/h', eventTypes: ['*'], secret: 'whsec_x', enabled: true, createdAt: at(1) };
        const teams: WebhookEndpointRecord = { ...mine, id: unique('wh'), userId: unique('user'), teamId, eventTypes: ['exec', 'sandbox.status'], createdAt: at(2) };
        const off: WebhookEndpointRecord = { ...mine, id: unique('wh'), enabled: false, createdAt: at(3) };
        for (const e of [mine, teams, off]) await store.insertWebhookEndpoint(e);
        assert.deepEqual(await store.getWebhookEndpoint(teams.id), teams);
        assert.deepEqual((await store.listWebhookEndpoints(userId, [])).map((e) => e.id), [mine.id, off.id]);
        assert.deepEqual((await store.listWebhookEndpoints(userId, [teamId])).map((e) => e.id), [mine.id, teams.id, off.id]);
        assert.deepEqual((await store.findWebhookEndpoints([userId], [])).map((e) => e.id), [mine.id]);
        // The team endpoint's registrant's own sandboxes do not reach it: only the team's do.
        assert.deepEqual((await store.findWebhookEndpoints([teams.userId], [])).map((e) => e.id), []);
        assert.deepEqual((await store.findWebhookEndpoints([], [teamId])).map((e) => e.id), [teams.id]);
        const d = delivery(mine.id);
        await store.insertWebhookDeliveries([d]);
        assert.deepEqual(await store.getWebhookDelivery(d.id), d);
        assert.equal(await store.deleteWebhookEndpoint(mine.id), true);
        assert.equal(await store.deleteWebhookEndpoint(mine.id), false);
        assert.equal(await store.getWebhookDelivery(d.id), undefined);
      });

      test('a due delivery is claimed by exactly one replica; only the holder may update it; a lapsed hold is claimed again', async () => {
        const endpointId = unique('wh');
        const due = delivery(endpointId, { nextAttemptAt: at(1), createdAt: at(1) });
        const later = delivery(endpointId, { nextAttemptAt: '2999-01-01T00:00:00.000Z', createdAt: at(2) });
        await store.insertWebhookDeliveries([due, later]);
        const now = at(10);
        const dueIds = await store.dueWebhookDeliveries(now, 100_000);
        assert.ok(dueIds.includes(due.id));
        assert.ok(!dueIds.includes(later.id));
        const claims = await Promise.all(['r1', 'r2', 'r3', 'r4'].map((r) => store.claimWebhookDelivery(due.id, `${r}-${run}`, now, at(11))));
        const winners = claims.filter((c) => c !== undefined);
        assert.equal(winners.length, 1);
        const holder = winners[0]!.claimedBy!;
        assert.equal(winners[0]!.status, 'delivering');
        assert.equal(await store.claimWebhookDelivery(later.id, holder, now, at(11)), undefined);
        const other = ['r1', 'r2'].map((r) => `${r}-${run}`).find((r) => r !== holder)!;
        assert.equal(await store.updateWebhookDelivery(due.id, { status: 'pending' }, other), undefined);
        // The hold lapses at minute 11: another replica takes it over.
        assert.equal(await store.claimWebhookDelivery(due.id, other, at(10.5), at(20)), undefined);
        const taken = await store.claimWebhookDelivery(due.id, other, at(12), at(20));
        assert.equal(taken?.claimedBy, other);
        assert.equal(await store.updateWebhookDelivery(due.id, { status: 'delivered' }, holder), undefined);
        const attempt = { at: at(12), durationMs: 5, statusCode: 200, error: null };
        const done = await store.updateWebhookDelivery(due.id, { status: 'delivered', attempts: 1, attemptLog: [attempt], lastStatusCode: 200, deliveredAt: at(12), claimedBy: null }, other);
        assert.deepEqual({ status: done?.status, attempts: done?.attempts, log: done?.attemptLog, code: done?.lastStatusCode }, { status: 'delivered', attempts: 1, log: [attempt], code: 200 });
        assert.ok(!(await store.dueWebhookDeliveries(at(100), 100_000)).includes(due.id));
        assert.deepEqual((await store.listWebhookDeliveries(endpointId, 10)).map((x) => x.id), [later.id, due.id]);
        // Finished deliveries older than the cutoff are purged; pending ones stay.
        for (let i = 0; i < 1000 && (await store.getWebhookDelivery(due.id)); i += 1) await store.purgeWebhookDeliveries(at(5), 1000);
        assert.equal(await store.getWebhookDelivery(due.id), undefined);
        assert.ok(await store.getWebhookDelivery(later.id));
      });
    });

    describe('checkpoints', () => {
      function checkpoint(overrides: Partial<CheckpointRecord> = {}): CheckpointRecord {
        return {
          id: unique('ckpt'),
          sandboxId: unique('sb'),
          parentId: null,
          depth: 1,
          userId: unique('user'),
          teamId: null,
          state: 'PENDING',
          dockerImage: 'busybox:latest',
          diskSizeGb: 2.5,
          registryCredentialsId: null,
          runtimeDriver: 'oci',
          runtimeOwner: unique('instance'),
          replicaId: 'r1',
          runtimeRef: null,
          sizeBytes: 0,
          memory: false,
          error: null,
          createdAt: at(1),
          updatedAt: at(1),
          expiresAt: null,
          ...overrides,
        };
      }

      test('inserts, reads back every field, moves state by compare-and-set, deletes', async () => {
        const c = checkpoint({ teamId: unique('team'), memory: true, expiresAt: at(60), registryCredentialsId: 'rc' });
        await store.insertCheckpoint(c);
        assert.deepEqual(await store.getCheckpoint(c.id), c);
        assert.equal(await store.updateCheckpoint(c.id, { state: 'DURABLE' }, ['DURABLE']), undefined, 'not DURABLE yet: nothing changes');
        const frozen = await store.updateCheckpoint(c.id, { state: 'FROZEN' }, ['PENDING']);
        assert.equal(frozen?.state, 'FROZEN');
        const durable = await store.updateCheckpoint(c.id, { state: 'DURABLE', runtimeRef: 'ref-1', sizeBytes: 5 * 1024 ** 3 + 17, parentId: 'p', depth: 2 }, ['PENDING', 'FROZEN']);
        assert.equal(durable?.state, 'DURABLE');
        assert.equal(durable?.runtimeRef, 'ref-1');
        assert.equal(durable?.sizeBytes, 5 * 1024 ** 3 + 17, 'sizes past 4 GiB survive');
        assert.equal(durable?.parentId, 'p');
        assert.equal(durable?.depth, 2);
        assert.ok((durable?.updatedAt ?? '') > c.updatedAt);
        assert.equal(await store.deleteCheckpoint(c.id), true);
        assert.equal(await store.getCheckpoint(c.id), undefined);
        assert.equal(await store.deleteCheckpoint(c.id), false);
        assert.equal(await store.updateCheckpoint(c.id, { state: 'FAILED' }), undefined);
      });

      test('lists newest first by sandbox, owner or team visibility, state, ids and expiry; counts by state', async () => {
        const owner = unique('user');
        const team = unique('team');
        const sandboxId = unique('sb');
        const instance = unique('instance');
        const a = checkpoint({ userId: owner, sandboxId, runtimeOwner: instance, createdAt: at(1), state: 'DURABLE', expiresAt: at(10) });
        const b = checkpoint({ userId: owner, sandboxId, runtimeOwner: instance, createdAt: at(2), state: 'FAILED' });
        const c = checkpoint({ userId: unique('user'), teamId: team, runtimeOwner: instance, createdAt: at(3), state: 'DURABLE', expiresAt: at(30) });
        const hidden = checkpoint({ runtimeOwner: instance, createdAt: at(4) });
        for (const row of [a, b, c, hidden]) await store.insertCheckpoint(row);
        const bySandbox = await store.listCheckpoints({ sandboxId }, 1, 10);
        assert.deepEqual(bySandbox.checkpoints.map((r) => r.id), [b.id, a.id]);
        assert.equal(bySandbox.total, 2);
        const visible = await store.listCheckpoints({ visibleTo: { userId: owner, teamIds: [team] } }, 1, 10);
        assert.deepEqual(visible.checkpoints.map((r) => r.id), [c.id, b.id, a.id]);
        const ownOnly = await store.listCheckpoints({ visibleTo: { userId: owner, teamIds: [] } }, 1, 10);
        assert.deepEqual(ownOnly.checkpoints.map((r) => r.id), [b.id, a.id]);
        const paged = await store.listCheckpoints({ visibleTo: { userId: owner, teamIds: [team] } }, 2, 2);
        assert.deepEqual(paged.checkpoints.map((r) => r.id), [a.id]);
        assert.equal(paged.total, 3);
        assert.deepEqual((await store.listCheckpoints({ sandboxId, states: ['DURABLE'] }, 1, 10)).checkpoints.map((r) => r.id), [a.id]);
        assert.deepEqual((await store.listCheckpoints({ sandboxId, ids: [b.id] }, 1, 10)).checkpoints.map((r) => r.id), [b.id]);
        assert.equal((await store.listCheckpoints({ sandboxId, ids: [] }, 1, 10)).total, 0);
        assert.deepEqual((await store.listCheckpoints({ runtimeOwner: instance, expiredBefore: at(20) }, 1, 10)).checkpoints.map((r) => r.id), [a.id]);
        const counts = Object.fromEntries((await store.countCheckpoints(instance)).map((r) => [r.state, r.count]));
        assert.deepEqual(counts, { DURABLE: 2, FAILED: 1, PENDING: 1 });
      });

      test("counts checkpoint bytes (but FAILED ones) in the owner's and the team's disk usage; keeps a sandbox's checkpoint id", async () => {
        const owner = unique('user');
        const team = unique('team');
        await store.insertCheckpoint(checkpoint({ userId: owner, teamId: team, state: 'DURABLE', sizeBytes: 2 * 1024 ** 3 }));
        await store.insertCheckpoint(checkpoint({ userId: owner, state: 'FAILED', sizeBytes: 1024 ** 3 }));
        const s = sandbox({ userId: owner, teamId: team, status: 'RUNNING', diskSizeGb: 5, checkpointId: 'from-ckpt' });
        await insertAll([s]);
        assert.equal((await store.quotaUsage('user', owner)).diskGb, 7);
        assert.equal((await store.quotaUsage('team', team)).diskGb, 7);
        assert.equal((await store.getSandbox(s.id))?.checkpointId, 'from-ckpt');
      });
    });
  });
}

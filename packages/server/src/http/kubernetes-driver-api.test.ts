import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { CreatedSandbox, RuntimeCapabilities, SandboxSpec } from '../runtime/runtime.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import { eventually } from '../testing/runtime-available.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';

/**
 * A runtime that reports what the kubernetes driver reports: the Pod's name as `kubernetesJobId`,
 * egress policies of addresses and CIDRs only, and no network for good once started without one.
 */
class PodLikeRuntime extends GatedRuntime {
  override capabilities(): RuntimeCapabilities {
    return { ...super.capabilities(), egressDomains: false, egressOpensNoNetwork: false };
  }
  override async create(spec: SandboxSpec): Promise<CreatedSandbox> {
    const { runtimeId } = await super.create(spec);
    return { runtimeId, kubernetesJobId: `corral-${spec.sandboxId.toLowerCase()}` };
  }
}

interface Sandbox {
  id: string;
  status: string;
  kubernetesJobId: string | null;
}
interface ErrorBody {
  code: string;
  detail: string;
  errors?: Array<{ param: string; details: string }>;
}

async function serve(runtime: GatedRuntime): Promise<{ t: TestServer; close: () => Promise<void> }> {
  runtime.openAll();
  const t = await startTestServer({ instanceId: `k8sapi-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000, createWaitMs: 2_000 }, {}, { runtime });
  return { t, close: () => t.close() };
}

async function create(t: TestServer, body: Record<string, unknown> = {}): Promise<{ status: number; sandbox: Sandbox & ErrorBody }> {
  const response = await t.request('POST', '/api/v1/sandbox', { body: { name: 'k8s', docker_image: 'busybox:latest', ...body } });
  return { status: response.statusCode, sandbox: response.json<Sandbox & ErrorBody>() };
}

describe('kubernetesJobId and the kubernetes driver\'s egress limits, through the API', { timeout: 60_000 }, () => {
  it('kubernetesJobId is the Pod the driver reported, in create, get and list answers; null on other drivers', async () => {
    const s = await serve(new PodLikeRuntime());
    try {
      const { status, sandbox } = await create(s.t);
      assert.equal(status, 201);
      const expected = `corral-${sandbox.id.toLowerCase()}`;
      const running = await eventually(async () => {
        const got = (await s.t.request('GET', `/api/v1/sandbox/${sandbox.id}`)).json<Sandbox>();
        return got.status === 'RUNNING' ? got : undefined;
      }, 5_000, 'RUNNING');
      assert.equal(running.kubernetesJobId, expected);
      if (sandbox.status === 'RUNNING') assert.equal(sandbox.kubernetesJobId, expected, 'the held create answers it too');
      const list = (await s.t.request('GET', '/api/v1/sandbox')).json<{ sandboxes: Sandbox[] }>();
      assert.equal(list.sandboxes.find((x) => x.id === sandbox.id)?.kubernetesJobId, expected);
      // It stays readable once the sandbox has ended.
      assert.equal((await s.t.request('DELETE', `/api/v1/sandbox/${sandbox.id}`)).statusCode, 200);
      assert.equal((await s.t.request('GET', `/api/v1/sandbox/${sandbox.id}`)).json<Sandbox>().kubernetesJobId, expected);
    } finally {
      await s.close();
    }
    const other = await serve(new GatedRuntime());
    try {
      const { sandbox } = await create(other.t);
      await eventually(async () => ((await other.t.server.store.getSandbox(sandbox.id))?.status === 'RUNNING' ? true : undefined), 5_000, 'RUNNING');
      assert.equal((await other.t.request('GET', `/api/v1/sandbox/${sandbox.id}`)).json<Sandbox>().kubernetesJobId, null);
    } finally {
      await other.close();
    }
  });

  it('refuses domain entries with 422 EGRESS_UNSUPPORTED naming the entry, at create and on PUT; addresses and CIDRs pass', async () => {
    const runtime = new PodLikeRuntime();
    const s = await serve(runtime);
    try {
      const refused = await create(s.t, { network_allowlist: ['203.0.113.7', 'api.example.com'] });
      assert.equal(refused.status, 422);
      assert.equal(refused.sandbox.code, 'EGRESS_UNSUPPORTED');
      assert.equal(refused.sandbox.errors?.[0]?.param, 'network_allowlist[1]');
      assert.match(refused.sandbox.errors?.[0]?.details ?? '', /"api\.example\.com" is a domain name; .*IP addresses and CIDRs only/);
      const denied = await create(s.t, { network_denylist: ['*.example.com'] });
      assert.equal(denied.status, 422);
      assert.equal(denied.sandbox.errors?.[0]?.param, 'network_denylist[0]');
      assert.equal((await s.t.request('GET', '/api/v1/sandbox')).json<{ total: number }>().total, 0, 'nothing was stored');

      const { status, sandbox } = await create(s.t, { network_allowlist: ['203.0.113.7', '198.51.100.0/24'] });
      assert.equal(status, 201);
      await eventually(async () => ((await s.t.server.store.getSandbox(sandbox.id))?.status === 'RUNNING' ? true : undefined), 5_000, 'RUNNING');
      assert.deepEqual(runtime.specs.get(sandbox.id)?.egress, { allowlist: ['203.0.113.7', '198.51.100.0/24'], denylist: null });
      const put = await s.t.request('PUT', `/api/v1/sandbox/${sandbox.id}/egress-policy`, { body: { allowlist: null, denylist: ['pypi.org'] } });
      assert.equal(put.statusCode, 422, put.body);
      assert.equal(put.json<ErrorBody>().errors?.[0]?.param, 'denylist[0]');
      const ok = await s.t.request('PUT', `/api/v1/sandbox/${sandbox.id}/egress-policy`, { body: { allowlist: null, denylist: ['203.0.113.0/24'] } });
      assert.equal(ok.statusCode, 200, ok.body);
    } finally {
      await s.close();
    }
  });

  it('a sandbox created without network stays closed: opening it is 409 EGRESS_NO_NETWORK', async () => {
    const s = await serve(new PodLikeRuntime());
    try {
      const { sandbox } = await create(s.t, { network_access: false });
      await eventually(async () => ((await s.t.server.store.getSandbox(sandbox.id))?.status === 'RUNNING' ? true : undefined), 5_000, 'RUNNING');
      const open = await s.t.request('PUT', `/api/v1/sandbox/${sandbox.id}/egress-policy`, { body: { allowlist: null, denylist: [] } });
      assert.equal(open.statusCode, 409, open.body);
      assert.equal(open.json<ErrorBody>().code, 'EGRESS_NO_NETWORK');
      const closed = await s.t.request('PUT', `/api/v1/sandbox/${sandbox.id}/egress-policy`, { body: { allowlist: [], denylist: null } });
      assert.equal(closed.statusCode, 200, closed.body);
    } finally {
      await s.close();
    }
  });

  it('refuses checkpoints, restores and forks with 409 CHECKPOINT_UNSUPPORTED (the kubelet has no capture Corral drives)', async () => {
    const s = await serve(new PodLikeRuntime());
    try {
      const { sandbox } = await create(s.t);
      await eventually(async () => ((await s.t.server.store.getSandbox(sandbox.id))?.status === 'RUNNING' ? true : undefined), 5_000, 'RUNNING');
      // A checkpoint another driver stored (a deployment that switched drivers): visible, DURABLE, not restorable here.
      const now = new Date().toISOString();
      const owner = (await s.t.server.store.getSandbox(sandbox.id))?.userId ?? '';
      await s.t.server.store.insertCheckpoint({
        id: `ckpt-${randomBytes(4).toString('hex')}`, sandboxId: sandbox.id, parentId: null, depth: 1, userId: owner, teamId: null, state: 'DURABLE',
        dockerImage: 'busybox:latest', diskSizeGb: 1, registryCredentialsId: null, runtimeDriver: 'oci', runtimeOwner: s.t.server.config.instanceId,
        replicaId: s.t.server.config.replicaId, runtimeRef: 'ref', sizeBytes: 1, memory: false, error: null, createdAt: now, updatedAt: now, expiresAt: null,
      });
      const [stored] = (await s.t.server.store.listCheckpoints({ sandboxId: sandbox.id }, 1, 1)).checkpoints;
      const refusals = [
        await s.t.request('POST', `/api/v1/sandbox/${sandbox.id}/checkpoints`),
        await s.t.request('POST', `/api/v1/sandbox/${sandbox.id}/fork`, { body: { count: 1 } }),
        await s.t.request('POST', '/api/v1/sandbox', { body: { name: 'r', checkpoint_id: stored?.id } }),
        await s.t.request('POST', `/api/v1/sandbox/checkpoints/${stored?.id}/fork`, { body: { count: 1 } }),
      ];
      for (const r of refusals) {
        assert.equal(r.statusCode, 409, r.body);
        assert.equal(r.json<ErrorBody>().code, 'CHECKPOINT_UNSUPPORTED');
      }
    } finally {
      await s.close();
    }
  });
});

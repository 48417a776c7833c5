import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../testing/runtime-available.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import type { RuntimeEvent, SandboxRuntime, SandboxSpec } from '../runtime/runtime.js';
import { startTestServer, type TestServer } from '../testing/test-server.js';
import { type GatewaySandbox, type GatewayTestServer, createSandbox, dockerMissing, execCall, startGatewayServer } from '../gateway/test-support.js';

/** The value of one sample of a Prometheus text exposition (labels matched as a subset), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = new Map([...(match[2] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(match[3]);
  }
  return undefined;
}

describe('GET /metrics: guards', () => {
  const servers: TestServer[] = [];
  after(async () => Promise.all(servers.map((s) => s.close())));
  const start = async (overrides: Parameters<typeof startTestServer>[0], runtime?: SandboxRuntime): Promise<TestServer> => {
    const t = await startTestServer(overrides, {}, runtime ? { runtime } : {});
    servers.push(t);
    return t;
  };

  it('loopback (the default) answers loopback callers and 403s others in the API error shape', async () => {
    const t = await start({});
    assert.equal(t.server.config.metrics, 'loopback');
    const ok = await t.server.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '127.0.0.1' });
    assert.equal(ok.statusCode, 200);
    assert.match(String(ok.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(ok.body, /# TYPE corral_sandbox_startup_seconds histogram/);
    const v6 = await t.server.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '::1' });
    assert.equal(v6.statusCode, 200);
    const far = await t.server.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '10.1.2.3', headers: { authorization: `Bearer ${t.adminKey}` } });
    assert.equal(far.statusCode, 403);
    assert.equal(far.json<{ code: string }>().code, 'FORBIDDEN');
    assert.equal(typeof far.json<{ detail: string }>().detail, 'string');
  });

  it('key wants the metrics key or an admin key: 401 without a valid one, 403 for a non-admin key', async () => {
    const t = await start({ metrics: 'key', metricsKey: 'scrape-secret-1' });
    const scrape = (authorization?: string) =>
      t.server.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '10.1.2.3', headers: authorization ? { authorization } : {} });
    const none = await scrape();
    assert.equal(none.statusCode, 401);
    assert.equal(none.json<{ code: string }>().code, 'UNAUTHORIZED');
    assert.equal((await scrape('Bearer wrong')).statusCode, 401);
    assert.equal((await scrape('Bearer scrape-secret-1')).statusCode, 200);
    assert.equal((await scrape(`Bearer ${t.adminKey}`)).statusCode, 200);
    const user = await t.createUser('metrics-reader');
    const plain = await scrape(`Bearer ${user.key}`);
    assert.equal(plain.statusCode, 403);
    assert.equal(plain.json<{ code: string }>().code, 'FORBIDDEN');
  });

  it('open answers anyone; off has no route', async () => {
    const open = await start({ metrics: 'open' });
    assert.equal((await open.server.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '10.1.2.3' })).statusCode, 200);
    const off = await start({ metrics: 'off' });
    const gone = await off.server.app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(gone.statusCode, 404);
    assert.equal(gone.json<{ code: string }>().code, 'ROUTE_NOT_FOUND');
  });

  it('labels API latency by route pattern, not URL, and counts sandboxes by status and driver', async () => {
    const t = await start({});
    const other = await start({});
    assert.equal((await t.request('GET', '/api/v1/sandbox/no-such-sandbox')).statusCode, 404);
    const created = await t.request('POST', '/api/v1/sandbox', { body: { name: 'm', docker_image: 'busybox', cpu_cores: 1, memory_gb: 1, disk_size_gb: 1 } });
    assert.equal(created.statusCode, 201);
    const text = (await t.server.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.equal(sample(text, 'corral_http_request_duration_seconds_count', { route: '/api/v1/sandbox/:sandbox_id', method: 'GET', status_class: '4xx' }), 1);
    assert.equal(sample(text, 'corral_http_request_duration_seconds_count', { route: '/api/v1/sandbox', method: 'POST', status_class: '2xx' }), 1);
    assert.doesNotMatch(text, /no-such-sandbox/);
    assert.equal((await t.request('POST', '/api/v1/sandbox/status:batchGet', { body: { sandbox_ids: ['x'] } })).statusCode, 200);
    const after = (await t.server.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.equal(sample(after, 'corral_http_request_duration_seconds_count', { route: '/api/v1/sandbox/status:batchGet', method: 'POST', status_class: '2xx' }), 1);
    assert.equal(sample(text, 'corral_sandboxes', { status: 'PENDING', driver: 'none' }), 1);
    // One registry per server: the other server saw none of it.
    const otherText = (await other.server.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.equal(sample(otherText, 'corral_http_request_duration_seconds_count', { route: '/api/v1/sandbox', method: 'POST', status_class: '2xx' }), undefined);
    assert.equal(sample(otherText, 'corral_sandboxes', { status: 'PENDING' }), undefined);
  });

  it('counts the image pulls the driver reports during creates, by driver and result, with bytes', async () => {
    const runtime = new PullReportingRuntime();
    runtime.openAll();
    const t = await start({}, runtime);
    for (const name of ['p1', 'p2']) {
      const created = await t.request('POST', '/api/v1/sandbox', { body: { name, docker_image: 'busybox', cpu_cores: 1, memory_gb: 1, disk_size_gb: 1 } });
      assert.equal(created.statusCode, 201, created.body);
    }
    const text = await eventually(async () => {
      const body = (await t.server.app.inject({ method: 'GET', url: '/metrics' })).body;
      return sample(body, 'corral_image_pulls_total', { driver: 'gated', result: 'failed' }) === 1 ? body : undefined;
    }, 10_000, 'both pulls counted');
    assert.equal(sample(text, 'corral_image_pulls_total', { driver: 'gated', result: 'ok' }), 1);
    assert.equal(sample(text, 'corral_image_pull_duration_seconds_count', { driver: 'gated', result: 'ok' }), 1);
    assert.equal(sample(text, 'corral_image_pull_duration_seconds_sum', { driver: 'gated', result: 'ok' }), 1.5);
    assert.equal(sample(text, 'corral_image_pull_bytes_total', { driver: 'gated' }), 4096);
  });
});

/** A gated runtime whose creates report an image pull: the first one made, the next one failed. */
class PullReportingRuntime extends GatedRuntime {
  private readonly listeners = new Set<(event: RuntimeEvent) => void>();

  override onEvent(listener: (event: RuntimeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  override async create(spec: SandboxSpec): Promise<{ runtimeId: string }> {
    const first = this.created.length === 0;
    for (const listener of this.listeners) listener({ type: 'image-pulled', image: spec.image, seconds: 1.5, bytes: first ? 4096 : 0, ok: first });
    return super.create(spec);
  }
}

const missing = dockerMissing();

describe('GET /metrics after a real create and exec (Docker)', { timeout: 180_000, skip: missing !== undefined && process.env.CI !== 'true' ? missing : undefined }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    server = await startGatewayServer();
    sb = await createSandbox(server);
  });
  after(async () => server?.close());

  it('fills the start-stage, exec, transfer and reconcile histograms', async () => {
    const exec = await execCall(sb, { command: 'printf hello' });
    assert.equal(exec.status, 200);
    const form = new FormData();
    form.append('file', new Blob([Buffer.alloc(5000, 7)]), 'f.bin');
    const upload = await fetch(`${sb.base}/upload?path=/tmp/f.bin`, { method: 'POST', headers: { authorization: `Bearer ${sb.token}` }, body: form });
    assert.equal(upload.status, 200);
    const download = await fetch(`${sb.base}/download?path=/tmp/f.bin`, { headers: { authorization: `Bearer ${sb.token}` } });
    assert.equal((await download.arrayBuffer()).byteLength, 5000);
    await server.t.server.reconciler.reconcile();

    // A download is counted when its answer has gone out (the response's close), which may come just after the client has it all.
    const text = await eventually(async () => {
      const res = await fetch(`${server.url}/metrics`);
      assert.equal(res.status, 200);
      const body = await res.text();
      return sample(body, 'corral_file_transfer_bytes_count', { direction: 'download' }) === 1 ? body : undefined;
    }, 10_000, 'the download counted');
    for (const stage of ['queued', 'runtime_create', 'total']) {
      assert.equal(sample(text, 'corral_sandbox_startup_seconds_count', { stage, driver: 'docker' }), 1, `stage ${stage}`);
    }
    const total = sample(text, 'corral_sandbox_startup_seconds_sum', { stage: 'total', driver: 'docker' }) ?? 0;
    const create = sample(text, 'corral_sandbox_startup_seconds_sum', { stage: 'runtime_create', driver: 'docker' }) ?? 0;
    assert.ok(total >= create && create > 0, `total ${total} ≥ runtime_create ${create} > 0`);
    assert.equal(sample(text, 'corral_exec_duration_seconds_count', { outcome: 'exited' }), 1);
    assert.equal(sample(text, 'corral_exec_output_bytes_sum'), 5);
    assert.equal(sample(text, 'corral_file_transfer_bytes_sum', { direction: 'upload' }), 5000);
    assert.equal(sample(text, 'corral_file_transfer_bytes_sum', { direction: 'download' }), 5000);
    assert.ok((sample(text, 'corral_reconcile_pass_duration_seconds_count') ?? 0) >= 1);
    assert.equal(sample(text, 'corral_sandboxes', { status: 'RUNNING', driver: 'docker' }), 1);
    assert.equal(sample(text, 'corral_gateway_queue_depth', { pool: 'exec' }), 0);
    assert.equal(sample(text, 'corral_admission_queue_length'), 0);
    assert.ok((sample(text, 'corral_http_request_duration_seconds_count', { route: '/gateway/:user_ns/:job_id/exec', method: 'POST', status_class: '2xx' }) ?? 0) >= 1);
  });

  it('GET /sandbox/{id}/stats reports CPU, memory, pids, disk and network; 404 to others, 409 once ended', async () => {
    await execCall(sb, { command: 'head -c 300000 /dev/urandom > /tmp/r; sleep 0.2' });
    const res = await server.t.request('GET', `/api/v1/sandbox/${sb.id}/stats`);
    assert.equal(res.statusCode, 200, res.body);
    const stats = res.json<{
      status: string;
      cpu: { usageSeconds: number; limitCores: number };
      memory: { usedBytes: number; limitBytes: number };
      pids: number;
      disk: { usedBytes: number | null; limitBytes: number };
      network: { rxBytes: number; txBytes: number } | null;
    }>();
    assert.equal(stats.status, 'RUNNING');
    assert.ok(stats.cpu.usageSeconds > 0);
    assert.equal(stats.cpu.limitCores, 1);
    assert.ok(stats.memory.usedBytes > 0 && stats.memory.limitBytes === 1024 ** 3);
    assert.ok(stats.pids >= 1);
    assert.equal(stats.disk.limitBytes, 1024 ** 3);
    assert.ok(stats.disk.usedBytes !== null && stats.disk.usedBytes >= 300_000, `disk used ${stats.disk.usedBytes}`);
    assert.ok(stats.network !== null, 'network counters read');
    const other = await server.t.createUser('stats-stranger');
    assert.equal((await server.t.request('GET', `/api/v1/sandbox/${sb.id}/stats`, { key: other.key })).statusCode, 404);
    assert.equal((await server.t.request('DELETE', `/api/v1/sandbox/${sb.id}`)).statusCode, 200);
    const ended = await server.t.request('GET', `/api/v1/sandbox/${sb.id}/stats`);
    assert.equal(ended.statusCode, 409);
    assert.equal(ended.json<{ code: string }>().code, 'SANDBOX_NOT_RUNNING');
  });
});

/**
 * What Prime's SDK sends for checkpoints (`prime_sandboxes` `sandbox.py`, `models.py`, and
 * `tests/test_checkpoints.py`), byte for byte where it matters, against a listening server with a
 * test runtime that implements the checkpoint seam:
 * - `checkpoint(sandbox_id)`: `POST /sandbox/{id}/checkpoints` with no body (httpx: Content-Length 0,
 *   the APIClient's `Content-Type: application/json`);
 * - `get_checkpoint(id)`: `GET /sandbox/checkpoints/{id}`, polled by `wait_for_checkpoint` until
 *   `DURABLE` (FAILED and DELETING raise with `error`);
 * - `list_checkpoints(sandbox_id[, checkpoint_id])`: `GET /sandbox/{id}/checkpoints[?checkpoint_id=]`
 *   → `{"checkpoints": [...]}`;
 * - restore: `create(CreateSandboxRequest(name=…, checkpoint_id=…))` posts
 *   `model_dump(exclude_none=True)`: `vm: true`, no `docker_image`, no `disk_size_gb`.
 * Every response is checked against what `SandboxCheckpoint` (pydantic) requires.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CheckpointingRuntime } from '../testing/checkpointing-runtime.js';
import { eventually } from '../testing/runtime-available.js';
import { type HttpAnswer, sendExact } from '../testing/exact-http.js';
import { type TestServer, startTestServer } from '../testing/test-server.js';


/** `prime_sandboxes.APIClient.request`: its session headers and httpx's, `params` as the query, `json` compact. */
function apiClient(baseUrl: string, apiKey: string) {
  return (method: string, endpoint: string, options: { params?: Record<string, string>; json?: Record<string, unknown> } = {}): Promise<HttpAnswer> => {
    const query = options.params ? `?${new URLSearchParams(options.params).toString()}` : '';
    const headers: Record<string, string> = {
      accept: '*/*',
      'accept-encoding': 'gzip, deflate',
      connection: 'keep-alive',
      'user-agent': 'prime-sandboxes/0.2.39 python/3.11.2',
      'content-type': 'application/json',
      authorization: `Bearer ${apiKey}`,
    };
    const body = options.json !== undefined ? Buffer.from(JSON.stringify(options.json)) : undefined;
    if (body !== undefined || ['POST', 'PUT', 'PATCH'].includes(method)) headers['content-length'] = String(body?.length ?? 0);
    return sendExact(`${baseUrl}/api/v1${endpoint}${query}`, method, headers, body);
  };
}

/** What `SandboxCheckpoint` requires (and the types it parses), as a list of problems. */
function checkpointProblems(value: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const field of ['id', 'sandbox_id', 'state', 'docker_image', 'created_at', 'updated_at']) if (typeof value[field] !== 'string') problems.push(`${field} is not a string`);
  if (!Number.isInteger(value.depth)) problems.push('depth is not an integer');
  for (const field of ['parent_id', 'team_id', 'error']) if (value[field] !== null && value[field] !== undefined && typeof value[field] !== 'string') problems.push(`${field} is not a string or null`);
  for (const field of ['disk_size_bytes', 'stored_bytes']) if (value[field] !== null && value[field] !== undefined && !Number.isInteger(value[field])) problems.push(`${field} is not an integer or null`);
  for (const field of ['created_at', 'updated_at']) if (Number.isNaN(Date.parse(String(value[field])))) problems.push(`${field} is not a datetime`);
  return problems;
}

describe("Prime SDK checkpoint requests against Corral", () => {
  const runtime = new CheckpointingRuntime();
  let t: TestServer;
  let url: string;

  before(async () => {
    runtime.openAll();
    t = await startTestServer({ instanceId: `prime-ckpt-${process.pid}`, reconcileIntervalMs: 600_000 }, {}, { runtime });
    url = await t.server.listen();
  });

  after(async () => {
    await t?.close();
  });

  it('checkpoint, wait_for_checkpoint, list_checkpoints (with and without checkpoint_id), and restore by create', async () => {
    const api = apiClient(url, t.adminKey);
    const created = await api('POST', '/sandbox', { json: { name: 'src', docker_image: 'python:3.11-slim', cpu_cores: 1.0, memory_gb: 1.0, disk_size_gb: 5.0, gpu_count: 0, timeout_minutes: 60, labels: [] } });
    assert.equal(created.status, 201, created.body);
    const sandboxId = created.json<{ id: string }>().id;
    await eventually(async () => ((await api('GET', `/sandbox/${sandboxId}`)).json<{ status: string }>().status === 'RUNNING' ? true : undefined), 30_000, 'RUNNING');

    const started = await api('POST', `/sandbox/${sandboxId}/checkpoints`);
    assert.ok(started.status >= 200 && started.status < 300, `${started.status} ${started.body}`);
    const pending = started.json<Record<string, unknown>>();
    assert.deepEqual(checkpointProblems(pending), []);
    assert.equal(pending.state, 'PENDING');
    assert.equal(pending.sandbox_id, sandboxId);
    const checkpointId = String(pending.id);

    // wait_for_checkpoint: get_checkpoint until DURABLE.
    const durable = await eventually(async () => {
      const got = await api('GET', `/sandbox/checkpoints/${checkpointId}`);
      assert.equal(got.status, 200, got.body);
      const body = got.json<Record<string, unknown>>();
      assert.deepEqual(checkpointProblems(body), []);
      assert.ok(['PENDING', 'FROZEN', 'DURABLE'].includes(String(body.state)), `state ${String(body.state)}`);
      return body.state === 'DURABLE' ? body : undefined;
    }, 30_000, 'DURABLE');
    assert.equal(durable.docker_image, 'python:3.11-slim');
    assert.equal(durable.disk_size_bytes, 5 * 1024 ** 3);

    const listed = await api('GET', `/sandbox/${sandboxId}/checkpoints`);
    assert.equal(listed.status, 200, listed.body);
    const all = listed.json<{ checkpoints: Array<Record<string, unknown>> }>().checkpoints;
    assert.deepEqual(all.map((c) => c.id), [checkpointId]);
    assert.deepEqual(all.flatMap(checkpointProblems), []);
    const filtered = await api('GET', `/sandbox/${sandboxId}/checkpoints`, { params: { checkpoint_id: checkpointId } });
    assert.deepEqual(filtered.json<{ checkpoints: Array<{ id: string }> }>().checkpoints.map((c) => c.id), [checkpointId]);
    const none = await api('GET', `/sandbox/${sandboxId}/checkpoints`, { params: { checkpoint_id: 'checkpoint-1' } });
    assert.deepEqual(none.json<{ checkpoints: unknown[] }>().checkpoints, []);

    // CreateSandboxRequest(name="restored", checkpoint_id=…).model_dump(exclude_none=True), as the SDK sends it.
    const restored = await api('POST', '/sandbox', {
      json: { name: 'restored', checkpoint_id: checkpointId, cpu_cores: 1.0, memory_gb: 1.0, gpu_count: 0, timeout_minutes: 60, labels: [], vm: true },
    });
    assert.equal(restored.status, 201, restored.body);
    const sandbox = restored.json<{ id: string; dockerImage: string; diskSizeGB: number; vm: boolean }>();
    assert.equal(sandbox.dockerImage, 'python:3.11-slim');
    assert.equal(sandbox.diskSizeGB, 5);
    assert.deepEqual(runtime.specs.get(sandbox.id)?.checkpoint, { ref: `ckpt-${checkpointId}`, memory: false });

    // get_checkpoint of an unknown id: the SDK's APIError("HTTP 404: …").
    const missing = await api('GET', '/sandbox/checkpoints/checkpoint-1');
    assert.equal(missing.status, 404);
    assert.equal(typeof missing.json<{ detail: string }>().detail, 'string');
  });
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GatewayTokens } from '../services/gateway-tokens.js';
import {
  type GatewaySandbox,
  type GatewayTestServer,
  createSandbox,
  dockerMissing,
  execCall,
  startGatewayServer,
  waitForStatus,
} from './test-support.js';

const OUTPUT_LIMIT = 1024 * 1024;
const missing = dockerMissing();

describe('gateway exec (Docker)', { timeout: 180_000, skip: missing !== undefined && process.env.CI !== 'true' ? missing : undefined }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;
  let other: GatewaySandbox;

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    // No periodic reconcile: the 409 test sets a row's status by hand.
    server = await startGatewayServer({ execOutputMaxBytes: OUTPUT_LIMIT, reconcileIntervalMs: 600_000 });
    [sb, other] = await Promise.all([createSandbox(server), createSandbox(server)]);
  });
  after(async () => server?.close());

  it('answers 200 with stdout, stderr and a non-zero exit code', async () => {
    const r = await execCall(sb, { command: 'echo out; echo err >&2; exit 7' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { stdout: 'out\n', stderr: 'err\n', exit_code: 7 });
  });

  it('answers a small output whole, with a Content-Length; a large one streamed', async () => {
    const call = (command: string): Promise<Response> =>
      fetch(`${sb.base}/exec`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${sb.token}` },
        body: JSON.stringify({ sandbox_id: sb.id, working_dir: null, env: {}, timeout: 30, command }),
      });
    const small = await call('echo hi');
    const smallText = await small.text();
    assert.equal(small.headers.get('content-length'), String(Buffer.byteLength(smallText)));
    assert.equal(small.headers.get('transfer-encoding'), null);
    const large = await call('head -c 300000 /dev/zero | tr "\\0" a');
    assert.equal(large.headers.get('transfer-encoding'), 'chunked');
    assert.equal((JSON.parse(await large.text()) as { stdout: string }).stdout.length, 300_000);
  });

  it('passes env, working_dir and user; timeout null means the default', async () => {
    const r = await execCall(sb, { command: 'echo "$GREETING $(pwd) $(id -u)"', env: { GREETING: "it's me" }, working_dir: '/tmp', user: '1234', timeout: null });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { stdout: "it's me /tmp 1234\n", stderr: '', exit_code: 0 });
  });

  it('runs a 1 MiB command', async () => {
    const payload = 'A'.repeat(1024 * 1024);
    const r = await execCall(sb, { command: `x='${payload}'; echo \${#x}` });
    assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 300));
    assert.equal(r.body.stdout, `${1024 * 1024}\n`);
  });

  it('caps stdout and stderr per call with a truncation marker', async () => {
    const r = await execCall(sb, { command: `head -c ${3 * OUTPUT_LIMIT} /dev/zero | tr '\\0' a; head -c 100 /dev/zero | tr '\\0' b >&2` });
    assert.equal(r.status, 200);
    assert.equal(r.body.exit_code, 0);
    assert.ok(r.body.stdout.startsWith('a'.repeat(OUTPUT_LIMIT)));
    assert.match(r.body.stdout.slice(OUTPUT_LIMIT), /^\n\[corral: output truncated: 2097152 more bytes not shown \(limit 1048576 bytes per stream\)\]\n$/);
    assert.equal(r.body.stderr, 'b'.repeat(100));
  });

  it('answers 408 on timeout and kills the whole process tree', async () => {
    const started = Date.now();
    const r = await execCall(sb, { command: 'sleep 1001 & (sleep 1002 &) ; sh -c "sleep 1003"; echo never', timeout: 1 });
    assert.equal(r.status, 408);
    assert.equal((r.body as unknown as { error: string }).error, 'command_timeout');
    assert.ok(Date.now() - started < 8000);
    const ps = await execCall(sb, { command: 'ps -o args | grep -c "^sleep 100[123]" || true' });
    assert.equal(ps.body.stdout.trim(), '0', 'no sleep survived the timeout');
  });

  it('kills the process tree when the client goes away mid-exec', async () => {
    const controller = new AbortController();
    const pending = fetch(`${sb.base}/exec`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sb.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ command: 'sleep 1008', timeout: 60 }),
      signal: controller.signal,
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    controller.abort();
    await assert.rejects(pending);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ps = await execCall(sb, { command: 'ps -o args | grep -c "^sleep 1008" || true' });
      if (ps.body.stdout.trim() === '0') break;
      assert.ok(Date.now() < deadline, 'sleep 1008 survived its client');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });

  it('returns while a background child that redirected its output keeps running', async () => {
    const started = Date.now();
    const r = await execCall(sb, { command: "sh -c 'sleep 2; echo late > /tmp/bg-redirected' < /dev/null > /dev/null 2>&1 & echo started" });
    const elapsed = Date.now() - started;
    assert.deepEqual(r.body, { stdout: 'started\n', stderr: '', exit_code: 0 });
    assert.ok(elapsed < 1500, `took ${elapsed} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const check = await execCall(sb, { command: 'cat /tmp/bg-redirected' });
    assert.equal(check.body.stdout, 'late\n');
  });

  it('returns about 2 s after the shell exits when a background child still holds stdout', async () => {
    const started = Date.now();
    const r = await execCall(sb, { command: 'sleep 30 & echo started' });
    const elapsed = Date.now() - started;
    assert.equal(r.status, 200);
    assert.equal(r.body.stdout, 'started\n');
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  });

  it('runs 32 concurrent execs in one sandbox', async () => {
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 32 }, (_, i) => execCall(sb, { command: `sleep 1; echo ${i}` })));
    results.forEach((r, i) => assert.deepEqual(r.body, { stdout: `${i}\n`, stderr: '', exit_code: 0 }));
    // Serialised, this would take 32 s.
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
  });

  it('refuses a float timeout (10.0 and 10.5) and other bad timeouts with 422', async () => {
    for (const raw of ['10.0', '10.5', '1e1', '"10"', '0', '-1', String(server.t.server.config.maxExecTimeoutSeconds + 1)]) {
      const r = await execCall(sb, `{"command":"echo hi","timeout":${raw},"sandbox_id":"${sb.id}"}`);
      assert.equal(r.status, 422, `timeout ${raw}`);
      assert.equal((r.body as unknown as { error: string }).error, 'validation_error');
    }
    const escaped = await execCall(sb, JSON.stringify({ command: 'echo \'"timeout": 1.5\'', timeout: 10 }));
    assert.equal(escaped.status, 200, 'a float inside the command string is not the timeout');
  });

  it('answers bad bodies with JSON 4xx, never 500', async () => {
    const cases: Array<[string, number]> = [
      ['{"command": 1}', 422],
      ['{}', 422],
      ['[]', 422],
      ['{"command":"true","env":{"A":1}}', 422],
      ['{"command":"true","working_dir":"relative"}', 422],
      ['{"command":"true","user":"a b"}', 422],
      ['{"command":', 400],
      ['', 422],
    ];
    for (const [body, status] of cases) {
      const r = await execCall(sb, body);
      assert.equal(r.status, status, body);
      assert.equal(typeof (r.body as unknown as { message: string }).message, 'string');
    }
  });

  it('answers 401 for a missing, malformed, foreign or expired token', async () => {
    const missingToken = await execCall(sb, { command: 'true' }, null);
    assert.equal(missingToken.status, 401);
    assert.equal((await execCall(sb, { command: 'true' }, 'not-a-token')).status, 401);
    assert.equal((await execCall(sb, { command: 'true' }, other.token)).status, 401, "another sandbox's token");
    const secret = readFileSync(join(server.t.dataDir, 'gateway-secret'), 'utf8').trim();
    const tokens = new GatewayTokens(secret, 60);
    const keyId = (await server.t.server.store.listApiKeys(sb.userNs))[0]?.id ?? 'no-key';
    const expired = tokens.issue(sb.id, sb.userNs, keyId, Date.now() - 61_000).token;
    assert.equal((await execCall(sb, { command: 'true' }, expired)).status, 401);
    const fresh = tokens.issue(sb.id, sb.userNs, keyId).token;
    assert.equal((await execCall(sb, { command: 'true' }, fresh)).status, 200, 'the same secret, unexpired');
    const wrongNs = await fetch(`${sb.base.replace(`/${sb.userNs}/`, '/someone-else/')}/exec`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sb.token}`, 'content-type': 'application/json' },
      body: '{"command":"true"}',
    });
    assert.equal(wrongNs.status, 401);
    assert.deepEqual(Object.keys((await wrongNs.json()) as object).sort(), ['code', 'error', 'message']);
  });

  it('answers 409 while the sandbox is provisioning', async () => {
    await server.t.server.store.updateSandbox(other.id, { status: 'PROVISIONING' });
    try {
      const r = await execCall(other, { command: 'true' });
      assert.equal(r.status, 409);
      assert.equal((r.body as unknown as { error: string }).error, 'sandbox_not_ready');
    } finally {
      await server.t.server.store.updateSandbox(other.id, { status: 'RUNNING' });
    }
    assert.equal((await execCall(other, { command: 'true' })).status, 200);
  });

  it('answers 502 sandbox_not_found once the sandbox is deleted', async () => {
    const doomed = await createSandbox(server);
    assert.equal((await execCall(doomed, { command: 'true' })).status, 200);
    const del = await server.t.request('DELETE', `/api/v1/sandbox/${doomed.id}`);
    assert.equal(del.statusCode, 200, del.body);
    await waitForStatus(server, doomed.id, 'TERMINATED');
    const r = await execCall(doomed, { command: 'true' });
    assert.equal(r.status, 502);
    assert.deepEqual(Object.keys(r.body).sort(), ['code', 'error', 'message', 'sandboxId']);
    assert.equal((r.body as unknown as { error: string }).error, 'sandbox_not_found');
    assert.equal((r.body as unknown as { sandboxId: string }).sandboxId, doomed.id);
    assert.equal((r.body as unknown as { code: number }).code, 502);
  });

  it('answers 502 sandbox_not_found when the container vanished under a RUNNING row', async () => {
    const doomed = await createSandbox(server);
    const row = await server.t.server.store.getSandbox(doomed.id);
    await server.t.server.runtime?.remove(row?.runtimeId ?? '');
    const r = await execCall(doomed, { command: 'true' });
    assert.equal(r.status, 502);
    assert.equal((r.body as unknown as { error: string }).error, 'sandbox_not_found');
  });

  it('resets the idle timer on exec, not on GET status', async () => {
    const before = (await server.t.server.store.getSandbox(other.id))?.lastActivityAt;
    assert.equal((await server.t.request('GET', `/api/v1/sandbox/${other.id}`)).statusCode, 200);
    await new Promise((resolve) => setTimeout(resolve, 1300));
    assert.equal((await server.t.server.store.getSandbox(other.id))?.lastActivityAt, before, 'GET status is not activity');
    assert.equal((await execCall(other, { command: 'true' })).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 1300));
    const afterExec = (await server.t.server.store.getSandbox(other.id))?.lastActivityAt;
    assert.ok(afterExec && afterExec !== before, `lastActivityAt ${before} -> ${afterExec}`);
  });

  it('refuses a malformed SSH key on authorize with a JSON 400', async () => {
    const res = await fetch(`${sb.base}/authorize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sb.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ session_id: 'x', public_key: 'ssh-ed25519 AAAA', ttl_seconds: 60 }),
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { code: number }).code, 400);
  });
});

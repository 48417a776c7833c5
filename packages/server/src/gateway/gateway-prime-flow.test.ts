import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createSandbox, dockerMissing, execCall, readFileCall, startGatewayServer, waitForStatus } from './test-support.js';

const IMAGE = 'python:3.11-slim';
const missing = dockerMissing(IMAGE);

/** Python's shlex.quote. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'"'"'`)}'`;
}

describe('Prime-style flow on python:3.11-slim (Docker)', { timeout: 120_000, skip: missing !== undefined && process.env.CI !== 'true' ? missing : undefined }, () => {
  it('create → RUNNING → readiness exec → python → background job → delete → container gone', async () => {
    if (missing !== undefined) throw new Error(missing);
    const server = await startGatewayServer();
    try {
      const sb = await createSandbox(server, { docker_image: IMAGE, start_command: 'tail -f /dev/null', memory_gb: 2, disk_size_gb: 2 });

      // wait_for_creation's reachability probe, then real work.
      const ready = await execCall(sb, { command: "echo 'sandbox ready'", timeout: 10 });
      assert.deepEqual(ready, { status: 200, body: { stdout: 'sandbox ready\n', stderr: '', exit_code: 0 } });
      const py = await execCall(sb, { command: "python3 -c 'print(1)'" });
      assert.deepEqual(py.body, { stdout: '1\n', stderr: '', exit_code: 0 });

      // start_background_job, byte for byte as SDK 0.2.39 builds it.
      const jobId = 'a1b2c3d4';
      const [out, err, exit] = [`/tmp/job_${jobId}.stdout.log`, `/tmp/job_${jobId}.stderr.log`, `/tmp/job_${jobId}.exit`];
      const body = `export GREETING=${shellQuote("hi there")}; cd ${shellQuote('/tmp')} && sleep 2 && python3 -c "import os; print(os.environ['GREETING'])" && echo oops >&2 && exit 3`;
      const shCommand = `(${body}) > ${out} 2> ${err}; echo $? > ${exit}`;
      const started = Date.now();
      const launch = await execCall(sb, { command: `nohup sh -c ${shellQuote(shCommand)} < /dev/null > /dev/null 2>&1 &`, timeout: 30 });
      assert.equal(launch.status, 200);
      assert.equal(launch.body.exit_code, 0);
      assert.ok(Date.now() - started < 1500, `starting the job took ${Date.now() - started} ms`);

      // get_background_job: poll the exit file, then tail the logs.
      const first = await readFileCall(sb, { path: exit });
      assert.equal(first.status, 404, 'the job is still running');
      let exitCode: number | undefined;
      const deadline = Date.now() + 20_000;
      while (exitCode === undefined) {
        assert.ok(Date.now() < deadline, 'the job never finished');
        const r = await readFileCall(sb, { path: exit });
        if (r.status === 200 && /^\d+\s*$/.test(String(r.body.content))) exitCode = Number(String(r.body.content).trim());
        else await new Promise((resolve) => setTimeout(resolve, 250));
      }
      assert.equal(exitCode, 3);
      const stdout = await readFileCall(sb, { path: out, offset: String(-10 * 1024 * 1024), length: String(10 * 1024 * 1024) });
      const stderr = await readFileCall(sb, { path: err, offset: String(-10 * 1024 * 1024), length: String(10 * 1024 * 1024) });
      assert.deepEqual(stdout.body, { content: 'hi there\n', size: 9, total_size: 9, offset: 0, truncated: false });
      assert.equal(stderr.body.content, 'oops\n');

      const row = await server.t.server.store.getSandbox(sb.id);
      const del = await server.t.request('DELETE', `/api/v1/sandbox/${sb.id}`);
      assert.equal(del.statusCode, 200, del.body);
      await waitForStatus(server, sb.id, 'TERMINATED');
      assert.equal(await server.t.server.runtime?.inspect(row?.runtimeId ?? ''), undefined, 'the container is gone');
      const after = await execCall(sb, { command: 'true' });
      assert.equal(after.status, 502);
    } finally {
      await server.close();
    }
  });
});

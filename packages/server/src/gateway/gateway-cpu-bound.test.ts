import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildImage } from '../images/image-catalog.js';
import { createRuntimeImages } from '../runtime/create-runtime.js';
import { ociMissing } from '../testing/runtime-available.js';
import { type GatewaySandbox, type GatewayTestServer, TEST_IMAGE, createSandbox, execCall, startGatewayServer } from './test-support.js';

const missing = ociMissing();
const skip = missing !== undefined && process.env.CI !== 'true' ? missing : undefined;

/**
 * Each command marks itself running in a directory, counts the marks, holds for `seconds`, then
 * unmarks itself; it prints the most it saw running at once (itself included).
 */
const counted = (i: number, seconds: number): string =>
  `mkdir -p /tmp/run && touch /tmp/run/${i} && n=$(ls /tmp/run | wc -l) && sleep ${seconds} && m=$(ls /tmp/run | wc -l) && rm /tmp/run/${i} && echo $(( n > m ? n : m ))`;

describe('gateway: concurrent operations bounded by the sandbox CPU cores (oci)', { timeout: 180_000, skip }, () => {
  let server: GatewayTestServer;
  let dataDir: string;
  /** cpu_cores 1 → 2 slots at CORRAL_EXECS_PER_CPU=2. */
  let one: GatewaySandbox;
  /** cpu_cores 0.25 → 1 slot. */
  let quarter: GatewaySandbox;

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    dataDir = mkdtempSync(join(tmpdir(), 'corral-cpubound-'));
    await buildImage('busybox', TEST_IMAGE, await createRuntimeImages({ runtime: 'oci', dataDir }));
    server = await startGatewayServer({ runtime: 'oci', dataDir, execsPerCpu: 2, maxExecsPerSandbox: 32 });
    [one, quarter] = await Promise.all([createSandbox(server, { cpu_cores: 1 }), createSandbox(server, { cpu_cores: 0.25 })]);
  });
  after(async () => {
    await server?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs at most ceil(cpu_cores × CORRAL_EXECS_PER_CPU) commands of a sandbox at once; the rest wait and all succeed', async () => {
    const [ones, quarters] = await Promise.all([
      Promise.all(Array.from({ length: 6 }, (_, i) => execCall(one, { command: counted(i, 0.4) }))),
      Promise.all(Array.from({ length: 3 }, (_, i) => execCall(quarter, { command: counted(i, 0.4) }))),
    ]);
    for (const r of [...ones, ...quarters]) assert.equal(r.status, 200, JSON.stringify(r.body));
    const peak = (rs: typeof ones): number => Math.max(...rs.map((r) => Number(r.body.stdout.trim())));
    assert.equal(peak(ones), 2, `a 1-core sandbox ran ${peak(ones)} commands at once`);
    assert.equal(peak(quarters), 1, `a 0.25-core sandbox ran ${peak(quarters)} commands at once`);
  });

  it("starts a waiting command's timeout when it runs, not when it was queued", async () => {
    // Two 2-second commands hold the quarter-core sandbox's one slot for ~4 s; the third waits that
    // long, then runs a 0.2 s command under a 2 s timeout, which it makes.
    const started = Date.now();
    const [first, second, third] = await Promise.all([
      execCall(quarter, { command: 'sleep 2', timeout: 10 }),
      execCall(quarter, { command: 'sleep 2', timeout: 10 }),
      execCall(quarter, { command: 'sleep 0.2; echo made-it', timeout: 2 }),
    ]);
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.equal(third.status, 200, JSON.stringify(third.body));
    assert.equal(third.body.stdout, 'made-it\n');
    assert.ok(Date.now() - started >= 3900, 'the commands ran one at a time');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type GatewaySandbox, type GatewayTestServer, type JsonResponse, createSandbox, dockerMissing, execCall, startGatewayServer } from './test-support.js';

const missing = dockerMissing();
const MiB = 1024 * 1024;
const CONCURRENT = 1000;
const SANDBOXES = 4;
/** Below CONCURRENT, so the server-wide queue is exercised. */
const SLOTS = Number(process.env.CORRAL_TEST_EXEC_SLOTS ?? 256);

describe('gateway under load (Docker)', { timeout: 180_000, skip: missing !== undefined && process.env.CI !== 'true' ? missing : undefined }, () => {
  let server: GatewayTestServer;
  let sandboxes: GatewaySandbox[];

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    server = await startGatewayServer({ maxConcurrentExecs: SLOTS });
    sandboxes = await Promise.all(Array.from({ length: SANDBOXES }, () => createSandbox(server)));
  });
  after(async () => server?.close());

  it(`runs ${CONCURRENT} concurrent execs across the server without a rejection, memory bounded`, async () => {
    const base = process.memoryUsage();
    let peakRss = base.rss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
    const started = Date.now();
    let results: Array<JsonResponse<{ stdout: string }>>;
    try {
      results = await Promise.all(
        Array.from({ length: CONCURRENT }, (_, i) => execCall(sandboxes[i % SANDBOXES] as GatewaySandbox, { command: `echo ${i}`, timeout: 120 })),
      );
    } finally {
      clearInterval(sampler);
    }
    const elapsed = Date.now() - started;
    console.log(
      `${CONCURRENT} concurrent execs over ${SANDBOXES} sandboxes, ${SLOTS} slots: ${elapsed} ms (${Math.round((CONCURRENT / elapsed) * 1000)} exec/s), ` +
        `RSS growth ${((peakRss - base.rss) / MiB).toFixed(1)} MiB (client in the same process)`,
    );
    const statuses = new Map<number, number>();
    for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    assert.deepEqual([...statuses], [[200, CONCURRENT]]);
    results.forEach((r, i) => assert.equal(r.body.stdout, `${i}\n`));
    assert.ok(peakRss - base.rss < 512 * MiB, `RSS grew ${((peakRss - base.rss) / MiB).toFixed(1)} MiB`);
  });
});

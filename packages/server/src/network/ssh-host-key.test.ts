import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import ssh2 from 'ssh2';

const execFileAsync = promisify(execFile);
const PROCESSES = 6;
const ROUNDS = 15;
const ROUND_GAP_MS = 150;

/**
 * PROCESSES processes load the host key of ROUNDS fresh data dirs, each round at the same moment
 * (as replicas sharing a data dir do when they start): in every round all of them must get the
 * same, complete key.
 */
test('replicas starting at once on a shared data dir all get the same complete SSH host key', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'corral-hostkey-'));
  try {
    const module = new URL('./ssh-host-key.ts', import.meta.url).href;
    const startAt = Date.now() + 8_000;
    // Each child loads the module, then for each round waits (spinning) for the round's moment and loads the key.
    const script = `
      const { loadOrCreateHostKey } = await import(${JSON.stringify(module)});
      const out = [];
      for (let round = 0; round < ${ROUNDS}; round++) {
        const at = ${startAt} + round * ${ROUND_GAP_MS};
        while (Date.now() < at) {}
        try { out.push({ key: loadOrCreateHostKey(${JSON.stringify(dir)} + '/round-' + round) }); }
        catch (e) { out.push({ error: String(e) }); }
      }
      process.stdout.write(JSON.stringify(out));
    `;
    const children = Array.from({ length: PROCESSES }, () =>
      execFileAsync(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', script], { maxBuffer: 16 << 20 }),
    );
    const results = (await Promise.all(children)).map((c) => JSON.parse(c.stdout) as Array<{ key?: string; error?: string }>);
    for (let round = 0; round < ROUNDS; round++) {
      const keys = results.map((r) => r[round] ?? {});
      for (const r of keys) {
        assert.equal(r.error, undefined, `round ${round}`);
        const parsed = ssh2.utils.parseKey(r.key ?? '');
        assert.ok(!(parsed instanceof Error), `round ${round}: a process got an unparsable key (${JSON.stringify((r.key ?? '').slice(0, 40))})`);
      }
      assert.equal(new Set(keys.map((r) => r.key)).size, 1, `round ${round}: the processes got different keys`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

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
 * PROCESSES processes each import `module` and, for ROUNDS fresh data dirs, call `call` (an
 * expression of `m`, the module, and `dir`) at the same moment per round, as replicas sharing a
 * data dir do when they start. Returns, per round, what each process got (or its error).
 */
async function race(module: string, call: string): Promise<Array<Array<{ value?: string; error?: string }>>> {
  const dir = await mkdtemp(join(tmpdir(), 'corral-secret-race-'));
  try {
    // Time for every child to load its modules before the first round (tsx, a loaded host).
    const startAt = Date.now() + 15_000;
    const script = `
      const m = await import(${JSON.stringify(module)});
      const { mkdirSync } = await import('node:fs');
      const out = [];
      for (let round = 0; round < ${ROUNDS}; round++) {
        const at = ${startAt} + round * ${ROUND_GAP_MS};
        while (Date.now() < at) {}
        const dir = ${JSON.stringify(dir)} + '/round-' + round;
        // The data dir exists (the server makes it first); what is raced for is the file in it.
        try { mkdirSync(dir, { recursive: true, mode: 0o700 }); out.push({ value: ${call} }); }
        catch (e) { out.push({ error: String(e) }); }
      }
      process.stdout.write(JSON.stringify(out));
    `;
    const children = Array.from({ length: PROCESSES }, () =>
      execFileAsync(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', script], { maxBuffer: 16 << 20 }),
    );
    const results = (await Promise.all(children)).map((c) => JSON.parse(c.stdout) as Array<{ value?: string; error?: string }>);
    return Array.from({ length: ROUNDS }, (_, round) => results.map((r) => r[round] ?? {}));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Every process of every round got the same value, with no error, and `valid` holds for it. */
function assertAllSame(rounds: Array<Array<{ value?: string; error?: string }>>, valid: (value: string) => boolean, what: string): void {
  rounds.forEach((got, round) => {
    for (const r of got) {
      assert.equal(r.error, undefined, `round ${round}`);
      assert.ok(valid(r.value ?? ''), `round ${round}: a process got an unusable ${what} (${JSON.stringify((r.value ?? '').slice(0, 40))})`);
    }
    assert.equal(new Set(got.map((r) => r.value)).size, 1, `round ${round}: the processes got different ${what}s`);
  });
}

test('replicas starting at once on a shared data dir all get the same complete SSH host key', { timeout: 120_000 }, async () => {
  const rounds = await race(new URL('../network/ssh-host-key.ts', import.meta.url).href, 'm.loadOrCreateHostKey(dir)');
  assertAllSame(rounds, (key) => !(ssh2.utils.parseKey(key) instanceof Error), 'host key');
});

test('replicas starting at once on a shared data dir all get the same complete gateway secret', { timeout: 120_000 }, async () => {
  const rounds = await race(new URL('../server.ts', import.meta.url).href, 'm.gatewaySecret({ gatewaySecret: null, dataDir: dir })');
  assertAllSame(rounds, (secret) => /^[A-Za-z0-9_-]{43}$/.test(secret), 'gateway secret');
});

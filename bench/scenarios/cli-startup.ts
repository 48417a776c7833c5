import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';
import { serveCorral } from '../lib/serve.js';

/**
 * `npm run bench -- cli-startup [--runs 30]`
 *
 * Start-up of the built CLI (`node packages/cli/bin/corral.js`, what an installed `corral` runs;
 * build it first with `npx tsc -b packages/server packages/sdk packages/cli`): wall time of
 * `corral --version` and of `corral sandbox list` against a live `corral serve` child process
 * (`CORRAL_RUNTIME=none`, no sandboxes, so the list is one small HTTP round trip). Baseline in the
 * same run, interleaved run by run: `node -e 0`, and `node -e` of one `fetch` of the same list (the
 * floor for any Node program that makes one request: it loads Node's fetch, then exits at once).
 * Each is a fresh process, timed from spawn to exit.
 */

const KEY = 'corral_bench_admin_key_0000000000000000000000000';
const BIN = fileURLToPath(new URL('../../packages/cli/bin/corral.js', import.meta.url));
const DIST = fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

/** One `GET /api/v1/sandbox?is_active=true` with Node's fetch, then exit. */
const FETCH_ONE =
  "fetch(process.env.CORRAL_API_URL + '/api/v1/sandbox?is_active=true', { headers: { authorization: 'Bearer ' + process.env.CORRAL_API_KEY } })" +
  '.then((r) => r.text()).then((t) => { process.stdout.write(t); process.exit(0); })';

/** Milliseconds from spawning `node args…` to its exit; throws if it fails. */
function timeProcess(args: string[], env: NodeJS.ProcessEnv): number {
  const started = process.hrtime.bigint();
  const result = spawnSync(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`node ${args.join(' ')} exited ${result.status}: ${result.stderr.toString()}`);
  return ms;
}

export async function run(args: string[]): Promise<void> {
  const runsAt = args.indexOf('--runs');
  const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 30;
  if (!existsSync(DIST)) throw new Error('packages/cli/dist is missing: run `npx tsc -b packages/server packages/sdk packages/cli` first');
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-bench-cli-'));
  const server = await serveCorral({ CORRAL_RUNTIME: 'none', CORRAL_DATA_DIR: dataDir, CORRAL_BOOTSTRAP_API_KEY: KEY });
  const cliEnv = { CORRAL_API_URL: server.url, CORRAL_API_KEY: KEY, XDG_CONFIG_HOME: dataDir };
  const commands: Array<{ name: string; args: string[]; env: NodeJS.ProcessEnv }> = [
    { name: 'node -e 0', args: ['-e', '0'], env: {} },
    { name: 'node fetch', args: ['-e', FETCH_ONE], env: cliEnv },
    { name: 'corral --version', args: [BIN, '--version'], env: {} },
    { name: 'corral sandbox list', args: [BIN, 'sandbox', 'list'], env: cliEnv },
  ];
  const samples = new Map<string, number[]>(commands.map((c) => [c.name, []]));
  try {
    // Warm up the file cache; the figures are from the runs after.
    for (const c of commands) timeProcess(c.args, c.env);
    for (let i = 0; i < runs; i += 1) {
      for (const c of commands) samples.get(c.name)?.push(timeProcess(c.args, c.env));
    }
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  const of = (name: string): ReturnType<typeof percentiles> => percentiles(samples.get(name) ?? []);
  const node = of('node -e 0');
  const fetchOne = of('node fetch');
  const version = of('corral --version');
  const list = of('corral sandbox list');
  const baselines: Baseline[] = [
    { name: 'node -e 0', ...node },
    { name: 'node fetch', ...fetchOne },
    { name: 'corral --version', ...version },
  ];
  report({
    scenario: 'cli-startup',
    driver: 'none',
    machine: machine(),
    runs,
    corral: { command: 'corral sandbox list (live server)', ...list },
    baselines,
    ratio_p50: { 'node -e 0': node.p50_ms / list.p50_ms, 'node fetch': fetchOne.p50_ms / list.p50_ms, 'corral --version': version.p50_ms / list.p50_ms },
    over_node_p50: { 'corral --version': version.p50_ms / node.p50_ms, 'corral sandbox list': list.p50_ms / node.p50_ms, 'node fetch': fetchOne.p50_ms / node.p50_ms },
  });
  const over = (p: { p50_ms: number }): string => `${(p.p50_ms / node.p50_ms).toFixed(2)}×`;
  console.log(`p50 over node -e 0: corral --version ${over(version)}, corral sandbox list ${over(list)}, node fetch ${over(fetchOne)}`);
}

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralClient } from '../../packages/sdk/src/client.js';
import { buildRootfs } from '../../packages/server/src/images/rootfs.js';
import { RECIPES } from '../../packages/server/src/images/recipes.js';
import { BENCH_KEY } from '../lib/corral-client.js';
import { BENCH_PYTHON_IMAGE, startBenchServer } from '../lib/bench-server.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';

/**
 * `npm run bench -- image-build [--runs 3]`
 *
 * Dockerfile build time through the images API (oci driver, a `corral serve` child) for the
 * Dockerfile of issue 15's "Done when": `FROM python:3.11-slim` (the offline image), a `RUN` step
 * and a multi-stage `COPY --from`. Each run is a new user: its first build is **cold** (the base
 * image is archived from Corral's store into the new owner's buildah storage), its second the
 * same context again (**cached**: the base and the owner's layer cache kept on its build disk, so
 * every step is reused). Timed from
 * `client.images.build()` (pack, `POST /images/build`, upload, start, poll) to its return, with
 * the phases read off the build log as it streams (polled every 200 ms at most).
 *
 * Baselines in the same run, on the same context: `buildah bud` run directly (root, no user
 * namespace, default isolation, `--pull-never`), with a storage root of its own that already
 * holds the same python image (committed once from the same rootfs tarball, not timed), once with
 * `--layers=false` (every step run) and once with `--layers` after a first layered build (its
 * layer cache hit, as Corral's cached build).
 */

const DOCKERFILE = [
  'FROM python:3.11-slim AS build',
  'ARG GREETING=hello',
  'WORKDIR /src',
  'COPY make.py .',
  'RUN python3 make.py "$GREETING" > out.txt',
  'FROM python:3.11-slim',
  'COPY --from=build /src/out.txt /app/out.txt',
  'COPY app.py /app/app.py',
  'CMD ["python3", "/app/app.py"]',
  '',
].join('\n');

function timed<T>(fn: () => T): [T, number] {
  const started = process.hrtime.bigint();
  const value = fn();
  return [value, Number(process.hrtime.bigint() - started) / 1e6];
}

/** Log lines that mark a build's phases, in order: what ends when each first appears. */
const PHASES: Array<[string, RegExp]> = [
  ['pack, upload, start, queue, extract', /^corral: resolving /m],
  ['base images into the owner storage', /STEP 1\//],
  ['buildah bud', /Successfully tagged/],
  ['push, import into the store', /^corral: stored/m],
];

/** Builds through the SDK, noting when each phase's marker first shows in the log (polled every <= 200 ms). */
async function phasedBuild(client: CorralClient, context: string, tag: string): Promise<{ image: string; ms: number; phases: Record<string, number> }> {
  const started = process.hrtime.bigint();
  const since = (): number => Number(process.hrtime.bigint() - started) / 1e6;
  let log = '';
  const seen: number[] = [];
  const image = await client.images.build({
    context,
    name: 'bench',
    tag,
    maxPollIntervalMs: 200,
    onLog: (text) => {
      log += text;
      for (let i = seen.length; i < PHASES.length && PHASES[i]?.[1].test(log); i += 1) seen.push(since());
    },
  });
  const ms = since();
  const phases: Record<string, number> = {};
  let previous = 0;
  PHASES.forEach(([name], i) => {
    const at = seen[i] ?? previous;
    phases[name] = Math.round(at - previous);
    previous = at;
  });
  phases['status seen COMPLETED'] = Math.round(ms - previous);
  return { image, ms, phases };
}


/** `buildah` with a storage root of its own. */
function buildah(root: string, args: string[]): string {
  const result = spawnSync('buildah', ['--root', join(root, 'root'), '--runroot', join(root, 'run'), '--storage-driver', 'overlay', ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`buildah ${args.join(' ')} exited ${result.status}: ${result.stderr.slice(-2000)}`);
  return result.stdout.trim();
}

export async function run(args: string[]): Promise<void> {
  const runsAt = args.indexOf('--runs');
  const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
  execFileSync('buildah', ['--version'], { stdio: 'ignore' });

  const scratch = mkdtempSync(join(tmpdir(), 'corral-bench-build-'));
  const context = join(scratch, 'context');
  mkdirSync(context);
  writeFileSync(join(context, 'Dockerfile'), DOCKERFILE);
  writeFileSync(join(context, 'make.py'), 'import sys\nprint(sys.argv[1], "from python", sys.version.split()[0])\n');
  writeFileSync(join(context, 'app.py'), 'print(open("/app/out.txt").read().strip())\n');

  // The direct baseline's storage: the same python image, committed from the same rootfs tarball.
  const direct = join(scratch, 'buildah');
  const rootfs = await buildRootfs('python');
  const recipe = RECIPES.python;
  const container = buildah(direct, ['from', 'scratch']);
  buildah(direct, ['add', container, rootfs.path, '/']);
  buildah(direct, ['config', ...recipe.env.flatMap((e) => ['--env', e]), '--cmd', JSON.stringify(recipe.cmd), container]);
  buildah(direct, ['commit', '--format', 'oci', container, BENCH_PYTHON_IMAGE]);
  buildah(direct, ['rm', container]);
  const bud = (tag: string, layers: boolean): number =>
    timed(() => buildah(direct, ['bud', '--pull-never', `--layers=${layers}`, '--isolation', 'oci', '--format', 'oci', '-f', join(context, 'Dockerfile'), '-t', tag, context]))[1];

  const server = await startBenchServer('oci', { CORRAL_IMAGE_BUILD_CONCURRENCY: '1' }, true);
  const admin = new CorralClient({ apiUrl: server.served.url, apiKey: BENCH_KEY });
  const cold: number[] = [];
  const cached: number[] = [];
  const directNoLayers: number[] = [];
  const directLayersCached: number[] = [];
  let image = '';
  const phaseRuns: Array<{ cold: Record<string, number>; cached: Record<string, number> }> = [];
  try {
    buildah(direct, ['bud', '--pull-never', '--layers=true', '--isolation', 'oci', '-f', join(context, 'Dockerfile'), '-t', 'bench/warm:layers', context]);
    for (let i = 0; i < runs; i += 1) {
      const user = await admin.users.create({ name: `bench-builder-${i}` });
      const key = await admin.keys.create({ user_id: user.id, name: 'bench' });
      const client = new CorralClient({ apiUrl: server.served.url, apiKey: key.key });
      const first = await phasedBuild(client, context, 'v1');
      const again = await phasedBuild(client, context, 'v2');
      const coldMs = first.ms;
      const cachedMs = again.ms;
      image = first.image;
      phaseRuns.push({ cold: first.phases, cached: again.phases });
      console.log(`  phases cold ${JSON.stringify(first.phases)}\n  phases cached ${JSON.stringify(again.phases)}`);
      cold.push(coldMs);
      cached.push(cachedMs);
      directNoLayers.push(bud(`bench/direct:${i}`, false));
      directLayersCached.push(bud(`bench/layers:${i}`, true));
      console.log(`run ${i + 1}/${runs}: API cold ${Math.round(coldMs)} ms, API cached ${Math.round(cachedMs)} ms, buildah bud ${Math.round(directNoLayers.at(-1) ?? 0)} ms, buildah bud --layers (cached) ${Math.round(directLayersCached.at(-1) ?? 0)} ms`);
    }
  } finally {
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  const coldP = percentiles(cold);
  const cachedP = percentiles(cached);
  const budP = percentiles(directNoLayers);
  const layersP = percentiles(directLayersCached);
  const baselines: Baseline[] = [
    { name: 'buildah bud --layers=false (direct)', ...budP },
    { name: 'buildah bud --layers (cached, direct)', ...layersP },
  ];
  report({
    scenario: 'image-build',
    driver: 'oci',
    machine: machine(),
    runs,
    image,
    phases_ms: phaseRuns,
    corral: { what: 'images API build, cold (new owner)', ...coldP },
    corral_cached: { what: 'images API build, again (base and layer cache kept)', ...cachedP },
    baselines,
    ratio_p50: {
      'buildah bud --layers=false (direct)': budP.p50_ms / coldP.p50_ms,
      'buildah bud --layers (cached, direct)': layersP.p50_ms / coldP.p50_ms,
    },
    ratio_p50_cached: {
      'buildah bud --layers=false (direct)': budP.p50_ms / cachedP.p50_ms,
      'buildah bud --layers (cached, direct)': layersP.p50_ms / cachedP.p50_ms,
    },
  });
  console.log(`ratio p50 buildah bud --layers=false / corral cached: ${(budP.p50_ms / cachedP.p50_ms).toFixed(2)}; buildah bud --layers (cached) / corral cached: ${(layersP.p50_ms / cachedP.p50_ms).toFixed(2)}`);
}

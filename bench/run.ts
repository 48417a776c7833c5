/**
 * Benchmark runner: `npm run bench -- <scenario> [options]`.
 * Each scenario writes bench/results/<scenario>.json and prints its figures beside baselines
 * measured in the same run. Scenarios are not tests: nothing here asserts a time.
 */
const SCENARIOS: Record<string, () => Promise<{ run(args: string[]): Promise<void> }>> = {
  api: () => import('./scenarios/api.js'),
  exec: () => import('./scenarios/exec.js'),
  tti: () => import('./scenarios/tti.js'),
  burst: () => import('./scenarios/burst.js'),
  density: () => import('./scenarios/density.js'),
  overload: () => import('./scenarios/overload.js'),
  fairness: () => import('./scenarios/fairness.js'),
  egress: () => import('./scenarios/egress.js'),
  'cli-startup': () => import('./scenarios/cli-startup.js'),
  'scale-costs': () => import('./scenarios/scale-costs.js'),
  'image-build': () => import('./scenarios/image-build.js'),
  checkpoint: () => import('./scenarios/checkpoint.js'),
};

const [name, ...args] = process.argv.slice(2);
const load = name ? SCENARIOS[name] : undefined;
if (!load) {
  console.error(`usage: npm run bench -- <scenario>\nscenarios: ${Object.keys(SCENARIOS).join(', ')}`);
  process.exit(2);
}
await (await load()).run(args);

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Latency percentiles in milliseconds. */
export interface Percentiles {
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
}

/** One baseline measured in the same run as Corral's figures. */
export interface Baseline extends Percentiles {
  name: string;
  [extra: string]: unknown;
}

/** The results file every scenario writes to `bench/results/<scenario>.json`. */
export interface ScenarioResult {
  scenario: string;
  driver: string;
  machine: string;
  runs: number;
  corral: Percentiles & Record<string, unknown>;
  baselines: Baseline[];
  /** baseline p50 / corral p50, per baseline: above 1 means Corral is faster. */
  ratio_p50: Record<string, number>;
  [extra: string]: unknown;
}

/** Whether a result field holds percentiles (a row to print). */
function isPercentiles(value: unknown): value is Percentiles & Record<string, unknown> {
  return typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>).p50_ms === 'number';
}

/** Rows for the other clients and measures a scenario reports beside Corral's (`server_readiness`, `prime_sdk_schedule`, …). */
function extraRows(result: ScenarioResult): Array<[string, Percentiles & Record<string, unknown>]> {
  return Object.entries(result)
    .filter(([key, value]) => !['corral', 'baselines'].includes(key) && isPercentiles(value))
    .map(([key, value]) => [`  ${key.replaceAll('_', ' ')}`, value as Percentiles & Record<string, unknown>]);
}

/** The p-th percentile (0..100) of a sample, nearest-rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** p50/p95/p99 of a sample of milliseconds, rounded to 0.01 ms. */
export function percentiles(values: readonly number[]): Percentiles {
  const round = (n: number): number => Math.round(n * 100) / 100;
  return { p50_ms: round(percentile(values, 50)), p95_ms: round(percentile(values, 95)), p99_ms: round(percentile(values, 99)) };
}

/** A one-line description of this machine for results files. */
export function machine(): string {
  const cpu = cpus();
  const load = loadavg().map((l) => l.toFixed(1)).join('/');
  return `${cpu.length}x ${cpu[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 1024 ** 3)} GiB, node ${process.version}, load ${load} (1/5/15 min) at the end of the run`;
}

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

/** Writes `bench/results/<file>.json` and prints a table of Corral's figures beside the baselines. */
export function report(result: ScenarioResult, file = result.scenario): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${file}.json`), `${JSON.stringify(result, null, 2)}\n`);
  const rows: Array<[string, Percentiles & Record<string, unknown>]> = [['corral', result.corral], ...extraRows(result), ...result.baselines.map((b) => [b.name, b] as [string, Baseline])];
  const width = Math.max(...rows.map(([name]) => name.length), 8);
  console.log(`\n${result.scenario} (${result.driver}, ${result.runs} runs) on ${result.machine}`);
  console.log(`${'what'.padEnd(width)}  ${'p50 ms'.padStart(9)}  ${'p95 ms'.padStart(9)}  ${'p99 ms'.padStart(9)}`);
  for (const [name, p] of rows) {
    console.log(`${name.padEnd(width)}  ${String(p.p50_ms).padStart(9)}  ${String(p.p95_ms).padStart(9)}  ${String(p.p99_ms).padStart(9)}`);
  }
  for (const [name, ratio] of Object.entries(result.ratio_p50)) console.log(`ratio p50 ${name} / corral: ${ratio.toFixed(2)}`);
  console.log(`written to bench/results/${file}.json`);
}

import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

const COLUMNS = ['time', 'kind', 'destination', 'port', 'verdict', 'answers'];

/** `corral sandbox egress-log ID [--limit N]`: recent DNS answers and connection attempts (table or `-o json`). */
export async function printEgressLog(id: string, options: { limit?: string }, globals: GlobalOptions): Promise<void> {
  const limit = options.limit === undefined ? undefined : Number(options.limit);
  if (limit !== undefined && !Number.isInteger(limit)) throw new Error(`--limit expects a whole number, got "${options.limit}"`);
  const entries = await clientFor(globals).egressLog(id, limit !== undefined ? { limit } : {});
  const rows = entries.map((e) => ({
    time: e.at,
    kind: e.kind,
    destination: e.destination,
    port: e.port,
    verdict: e.verdict,
    answers: e.answers?.join(',') ?? null,
  }));
  printResult(globals.output, { entries }, rows, COLUMNS);
}

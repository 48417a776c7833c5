import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import { age } from './formatting.js';

/** Bytes as a short human figure (1.5 MiB). */
function size(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** `corral sandbox checkpoints ID`: the sandbox's checkpoints, newest first (table, or `-o json`). */
export async function listCheckpoints(id: string, _options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).sandboxes.listCheckpoints(id);
  const rows = result.checkpoints.map((c) => ({
    id: c.id,
    state: c.state,
    parent: c.parent_id,
    depth: c.depth,
    stored: size(c.stored_bytes),
    memory: c.memory ? 'yes' : 'no',
    age: age(c.created_at),
    error: c.error,
  }));
  printResult(globals.output, result, rows, ['id', 'state', 'parent', 'depth', 'stored', 'memory', 'age', 'error']);
}

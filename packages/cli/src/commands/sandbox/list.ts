import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import { age } from './formatting.js';

/** `corral sandbox list`: a table (id, name, image, status, age) or `--output json`. */
export async function listSandboxes(options: { label?: string[]; status?: string; all?: boolean; page: string; num: string }, globals: GlobalOptions): Promise<void> {
  const client = clientFor(globals);
  const result = await client.sandboxes.list({
    page: Number(options.page),
    per_page: Number(options.num),
    ...(options.label ? { labels: options.label } : {}),
    ...(options.status ? { status: options.status.toUpperCase() as 'RUNNING' } : {}),
    ...(!options.all && !options.status ? { is_active: true } : {}),
  });
  const rows = result.sandboxes.map((s) => ({ id: s.id, name: s.name, image: s.dockerImage, status: s.status, age: age(s.createdAt) }));
  printResult(globals.output, result, rows, ['id', 'name', 'image', 'status', 'age']);
  if (globals.output !== 'json' && result.has_next) process.stderr.write(`(${result.total} in all; next page: --page ${result.page + 1})\n`);
}

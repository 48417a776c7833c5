import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import { age } from './formatting.js';

/** `corral sandbox get ID`. */
export async function getSandbox(id: string, _options: object, globals: GlobalOptions): Promise<void> {
  const s = await clientFor(globals).sandboxes.get(id);
  if (globals.output === 'json') {
    printResult('json', s, [], []);
    return;
  }
  const rows: Array<[string, unknown]> = [
    ['id', s.id],
    ['name', s.name],
    ['image', s.dockerImage],
    ['status', s.status],
    ['resources', `${s.cpuCores} CPU, ${s.memoryGB} GB memory, ${s.diskSizeGB} GB disk`],
    ['labels', s.labels.join(', ') || '-'],
    ['created', `${s.createdAt} (${age(s.createdAt)} ago)`],
    ['started', s.startedAt ?? '-'],
    ['timeout', `${s.timeoutMinutes} min`],
    ['error', s.errorType ? `${s.errorType}: ${s.errorMessage ?? ''}` : '-'],
  ];
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(10)} ${String(v)}\n`);
}

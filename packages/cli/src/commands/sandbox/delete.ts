import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

/** `corral sandbox delete [IDS…] [--label L…] [--all]`. */
export async function deleteSandboxes(ids: string[], options: { label?: string[]; all?: boolean }, globals: GlobalOptions): Promise<void> {
  const client = clientFor(globals);
  let targets = ids.flatMap((id) => id.split(',')).map((id) => id.trim()).filter((id) => id !== '');
  if (targets.length === 0 && !options.label && !options.all) throw new Error('give sandbox ids, --label or --all (see `corral sandbox delete --help`)');
  if (options.all) {
    for (let page = 1; ; page++) {
      const result = await client.sandboxes.list({ is_active: true, per_page: 1000, page, ...(options.label ? { labels: options.label } : {}) });
      targets.push(...result.sandboxes.map((s) => s.id));
      if (!result.has_next) break;
    }
    targets = [...new Set(targets)];
  }
  const succeeded: string[] = [];
  const failed: Array<Record<string, string>> = [];
  if (!options.all && options.label && targets.length === 0) {
    const result = await client.sandboxes.bulkDelete({ labels: options.label });
    succeeded.push(...result.succeeded);
    failed.push(...result.failed);
  }
  for (let i = 0; i < targets.length; i += 100) {
    const result = await client.sandboxes.bulkDelete({ sandbox_ids: targets.slice(i, i + 100), ...(!options.all && options.label ? { labels: options.label } : {}) });
    succeeded.push(...result.succeeded);
    failed.push(...result.failed);
  }
  if (globals.output === 'json') printResult('json', { succeeded, failed }, [], []);
  else {
    for (const id of succeeded) process.stdout.write(`${id}\n`);
    for (const f of failed) process.stderr.write(`corral: ${f.sandbox_id ?? '?'}: ${f.error ?? 'failed'}\n`);
    process.stderr.write(`Deleted ${succeeded.length} sandbox(es)${failed.length ? `, ${failed.length} failed` : ''}\n`);
  }
  if (failed.length > 0) process.exitCode = 1;
}

import { type Quota, type QuotaOverrides, QUOTA_UNLIMITED } from '@corral/sdk';
import { type Command, InvalidArgumentError } from 'commander';
import { printResult } from '../output.js';
import { type GlobalOptions, run } from '../run.js';
import { clientFor } from './sandbox/sdk-client.js';

/** Whose quota a `quota` command shows or changes. */
export type QuotaSubject = 'user' | 'team';

/**
 * A flag's value: a limit, {@link QUOTA_UNLIMITED}, or `default` for the server default (commander
 * turns a parser's null into '', so the server default travels as a word until the request is built).
 */
export type Limit = number | 'default';

interface QuotaOptions {
  sandboxes?: Limit;
  cpuCores?: Limit;
  memoryGb?: Limit;
  diskGb?: Limit;
  reset?: boolean;
}

/** The quota resources in display order: CLI name (as the flag), wire name, option key. */
const RESOURCES = [
  ['sandboxes', 'sandboxes', 'sandboxes'],
  ['cpu-cores', 'cpu_cores', 'cpuCores'],
  ['memory-gb', 'memory_gb', 'memoryGb'],
  ['disk-gb', 'disk_gb', 'diskGb'],
] as const satisfies ReadonlyArray<readonly [string, keyof QuotaOverrides, keyof QuotaOptions]>;

/**
 * Parses a limit flag: a number from 0 up (a whole number for `--sandboxes`), `unlimited` (or -1)
 * for no limit, or `default` for the server default.
 */
export function parseLimit(integer: boolean): (value: string) => Limit {
  return (value) => {
    const text = value.trim().toLowerCase();
    if (text === 'unlimited' || text === '-1') return QUOTA_UNLIMITED;
    if (text === 'default') return 'default';
    if (!(integer ? /^\d+$/ : /^\d+(\.\d+)?$/).test(text)) {
      throw new InvalidArgumentError(`expected ${integer ? 'a whole number' : 'a number'} from 0 up, \`unlimited\` or \`default\`.`);
    }
    return Number(text);
  };
}

function shown(value: number | null, nullText: string): string {
  if (value === null) return nullText;
  return value === QUOTA_UNLIMITED ? 'unlimited' : String(value);
}

/** One row per resource: what is in use, the limit in force and where it comes from. */
export function quotaRows(quota: Quota): Array<Record<string, string>> {
  return RESOURCES.map(([name, wire]) => ({
    resource: name,
    used: String(quota.usage[wire]),
    limit: shown(quota.limits[wire], 'unlimited'),
    override: shown(quota.overrides[wire], 'default'),
  }));
}

/**
 * Registers `<parent> quota <id> [--sandboxes N] [--cpu-cores N] [--memory-gb N] [--disk-gb N] [--reset]`
 * under `corral users` or `corral teams`. Without flags it shows the quota (limits, overrides, usage);
 * with flags it changes only the resources named and keeps the other overrides (it reads them first);
 * `--reset` drops every override, and with flags keeps only those.
 */
export function registerQuota(parent: Command, subject: QuotaSubject): void {
  const whose = subject === 'user' ? "a user's" : "a team's";
  const scope = subject === 'user' ? 'their' : "the team's";
  parent
    .command(`quota <${subject}Id>`)
    .description(
      `Show ${whose} quota over ${scope} active sandboxes (limits, overrides, usage), or change it (admin). ` +
        'Each limit takes a number, `unlimited`, or `default` (the server default); resources not named keep their override.',
    )
    .option('--sandboxes <n>', 'most active sandboxes at once', parseLimit(true))
    .option('--cpu-cores <n>', 'total CPU cores of active sandboxes', parseLimit(false))
    .option('--memory-gb <n>', 'total memory of active sandboxes, GB', parseLimit(false))
    .option('--disk-gb <n>', 'total disk of active sandboxes, GB', parseLimit(false))
    .option('--reset', 'drop every override so the server defaults apply (with limit flags: keep only those)')
    .action(
      run(async (id: string, options: QuotaOptions, globals: GlobalOptions) => {
        const client = clientFor(globals);
        const api = subject === 'user' ? client.users : client.teams;
        const changes: QuotaOverrides = {};
        for (const [, wire, key] of RESOURCES) {
          const value = options[key];
          if (value !== undefined) changes[wire] = value === 'default' ? null : value;
        }
        const changing = Object.keys(changes).length > 0;
        let quota: Quota;
        if (!changing) quota = options.reset ? await api.resetQuota(id) : await api.quota(id);
        else if (options.reset) quota = await api.setQuota(id, changes);
        else quota = await api.setQuota(id, { ...(await api.quota(id)).overrides, ...changes });
        if (globals.output === 'json') printResult('json', quota, [], []);
        else printResult('table', quota, quotaRows(quota), ['resource', 'used', 'limit', 'override']);
        if (changing || options.reset) process.stderr.write(`${options.reset && !changing ? 'Reset' : 'Set'} the quota of ${subject} ${id}.\n`);
      }),
    );
}

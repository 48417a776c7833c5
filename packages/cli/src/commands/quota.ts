import type { QuotaOverrides } from '@corral/sdk';
import { type Command, InvalidArgumentError } from 'commander';
import { lazy } from '../run.js';

/** Whose quota a `quota` command shows or changes. */
export type QuotaSubject = 'user' | 'team';

/**
 * A flag's value: a limit, `unlimited` (the SDK's `QUOTA_UNLIMITED`), or `default` for the server
 * default. Both travel as words until the request is built (commander turns a parser's null into '',
 * and the SDK, which holds the constant, loads only when the command runs).
 */
export type Limit = number | 'unlimited' | 'default';

/** The flags of a `quota` command. */
export interface QuotaOptions {
  sandboxes?: Limit;
  cpuCores?: Limit;
  memoryGb?: Limit;
  diskGb?: Limit;
  reset?: boolean;
}

/** The quota resources in display order: CLI name (as the flag), wire name, option key. */
export const RESOURCES = [
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
    if (text === 'unlimited' || text === '-1') return 'unlimited';
    if (text === 'default') return 'default';
    if (!(integer ? /^\d+$/ : /^\d+(\.\d+)?$/).test(text)) {
      throw new InvalidArgumentError(`expected ${integer ? 'a whole number' : 'a number'} from 0 up, \`unlimited\` or \`default\`.`);
    }
    return Number(text);
  };
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
    .action(lazy(async () => (await import('./quota-action.js')).quotaCommand(subject)));
}

import { type Quota, type QuotaOverrides, QUOTA_UNLIMITED } from '@corral/sdk';
import { printResult } from '../output.js';
import type { CommandAction } from '../run.js';
import { clientFor } from '../sdk-client.js';
import { type QuotaOptions, type QuotaSubject, RESOURCES } from './quota.js';

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
 * `corral users|teams quota ID [flags]`: without flags shows the quota; with flags changes only the
 * resources named and keeps the other overrides (it reads them first); `--reset` drops every
 * override, and with flags keeps only those.
 */
export function quotaCommand(subject: QuotaSubject): CommandAction<[string, QuotaOptions]> {
  return async (id, options, globals) => {
    const client = clientFor(globals);
    const api = subject === 'user' ? client.users : client.teams;
    const changes: QuotaOverrides = {};
    for (const [, wire, key] of RESOURCES) {
      const value = options[key];
      if (value !== undefined) changes[wire] = value === 'default' ? null : value === 'unlimited' ? QUOTA_UNLIMITED : value;
    }
    const changing = Object.keys(changes).length > 0;
    let quota: Quota;
    if (!changing) quota = options.reset ? await api.resetQuota(id) : await api.quota(id);
    else if (options.reset) quota = await api.setQuota(id, changes);
    else quota = await api.setQuota(id, { ...(await api.quota(id)).overrides, ...changes });
    if (globals.output === 'json') printResult('json', quota, [], []);
    else printResult('table', quota, quotaRows(quota), ['resource', 'used', 'limit', 'override']);
    if (changing || options.reset) process.stderr.write(`${options.reset && !changing ? 'Reset' : 'Set'} the quota of ${subject} ${id}.\n`);
  };
}

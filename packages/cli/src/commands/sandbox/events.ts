import type { SandboxEvent } from '@corral/sdk';
import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

const COLUMNS = ['time', 'type', 'actor', 'details'];

/** An event's fields as one short line: `key=value` pairs, long values cut. */
function details(event: SandboxEvent): string {
  return Object.entries(event.data)
    .filter(([, value]) => value !== null && value !== undefined && !(Array.isArray(value) && value.length === 0))
    .map(([key, value]) => {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      return `${key}=${text.length > 80 ? `${text.slice(0, 77)}...` : text}`;
    })
    .join(' ');
}

function row(event: SandboxEvent): Record<string, unknown> {
  return { time: event.at, type: event.type, actor: event.actor?.userId ?? 'server', details: details(event) };
}

/**
 * `corral sandbox events ID [--limit N] [--after EVENT_ID] [--follow]`: a sandbox's timeline, oldest
 * first (table, or `-o json`). `--follow` prints events as they happen (with `-o json`, one JSON
 * object a line) until the sandbox has ended, or Ctrl-C.
 */
export async function printEvents(id: string, options: { limit?: string; after?: string; follow?: boolean }, globals: GlobalOptions): Promise<void> {
  const limit = options.limit === undefined ? undefined : Number(options.limit);
  if (limit !== undefined && !Number.isInteger(limit)) throw new Error(`--limit expects a whole number, got "${options.limit}"`);
  const client = clientFor(globals);
  if (!options.follow) {
    const page = await client.events(id, { ...(limit !== undefined ? { limit } : {}), ...(options.after !== undefined ? { after: options.after } : {}) });
    printResult(globals.output, page, page.events.map(row), COLUMNS);
    return;
  }
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  try {
    for await (const event of client.followEvents(id, { ...(options.after !== undefined ? { after: options.after } : {}), signal: stop.signal })) {
      if (globals.output === 'json') process.stdout.write(`${JSON.stringify(event)}\n`);
      else {
        const r = row(event);
        process.stdout.write(`${String(r.time)}  ${String(r.type).padEnd(21)}  ${String(r.actor).padEnd(12)}  ${String(r.details)}\n`);
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
  }
}

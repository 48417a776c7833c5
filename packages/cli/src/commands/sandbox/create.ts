import { Sandbox } from '@corral/sdk';
import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import { keyValues } from '../../option-parsers.js';

export interface CreateOptions {
  name?: string;
  startCommand?: string;
  cpuCores?: string;
  memoryGb?: string;
  diskSizeGb?: string;
  timeoutMinutes?: string;
  idleTimeoutMinutes?: string;
  env?: string[];
  secret?: string[];
  label?: string[];
  teamId?: string;
  wait?: boolean;
  allow?: string[];
  deny?: string[];
  /** False with `--no-network`. */
  network?: boolean;
}

/** The egress fields the flags ask for; throws on flags that contradict each other. */
export function createEgress(options: Pick<CreateOptions, 'allow' | 'deny' | 'network'>): { networkAllowlist?: string[]; networkDenylist?: string[] } {
  const given = [options.allow !== undefined, options.deny !== undefined, options.network === false].filter(Boolean).length;
  if (given > 1) throw new Error('give one of --allow, --deny or --no-network');
  if (options.network === false) return { networkAllowlist: [] };
  if (options.allow) return { networkAllowlist: options.allow };
  if (options.deny) return { networkDenylist: options.deny };
  return {};
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

function number(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`${flag} expects a number, got "${value}"`);
  return n;
}

/** `corral sandbox create IMAGE [-- START COMMAND…]`: prints the new id; `--wait` waits until RUNNING. */
export async function createSandbox(image: string, startArgs: string[], options: CreateOptions, globals: GlobalOptions): Promise<void> {
  const client = clientFor(globals);
  const startCommand = startArgs.length > 0 ? startArgs.join(' ') : options.startCommand;
  const memoryGb = number(options.memoryGb, '--memory-gb');
  const cpuCores = number(options.cpuCores, '--cpu-cores');
  const diskSizeGb = number(options.diskSizeGb, '--disk-size-gb');
  const timeoutMinutes = number(options.timeoutMinutes, '--timeout-minutes');
  const idleTimeoutMinutes = number(options.idleTimeoutMinutes, '--idle-timeout-minutes');
  const env = keyValues(options.env, '--env');
  const secrets = keyValues(options.secret, '--secret');
  const egress = createEgress(options);
  const sandbox = await Sandbox.create(client, {
    image,
    ...(options.name !== undefined ? { name: options.name } : {}),
    ...(startCommand !== undefined ? { startCommand } : {}),
    ...(cpuCores !== undefined ? { cpuCores } : {}),
    ...(memoryGb !== undefined ? { memoryGb } : {}),
    ...(diskSizeGb !== undefined ? { diskSizeGb } : {}),
    ...(timeoutMinutes !== undefined ? { timeoutMinutes } : {}),
    ...(idleTimeoutMinutes !== undefined ? { idleTimeoutMinutes } : {}),
    ...(env ? { env } : {}),
    ...(secrets ? { secrets } : {}),
    ...(options.label ? { labels: options.label } : {}),
    ...(options.teamId !== undefined ? { teamId: options.teamId } : {}),
    ...egress,
  });
  if (options.wait) {
    // The server holds its answer while the sandbox starts, so it is usually RUNNING already:
    // then there is nothing to wait for and no spinner.
    const started = Date.now();
    if (sandbox.info.status !== 'RUNNING') {
      let frame = 0;
      const spinner = process.stderr.isTTY
        ? setInterval(() => process.stderr.write(`\r${FRAMES[frame++ % FRAMES.length]} waiting for ${sandbox.id} to be RUNNING (${Math.round((Date.now() - started) / 1000)}s)\x1b[K`), 100)
        : undefined;
      if (!spinner) process.stderr.write(`waiting for ${sandbox.id} to be RUNNING…\n`);
      try {
        await sandbox.waitUntilRunning();
      } finally {
        if (spinner) {
          clearInterval(spinner);
          process.stderr.write('\r\x1b[K');
        }
      }
      await sandbox.refresh();
    }
    process.stderr.write(`${sandbox.id} is RUNNING (${((Date.now() - started) / 1000).toFixed(1)}s)\n`);
  }
  if (globals.output === 'json') printResult('json', sandbox.info, [], []);
  else process.stdout.write(`${sandbox.id}\n`);
}

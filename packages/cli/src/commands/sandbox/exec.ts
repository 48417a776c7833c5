import { type ExecSession, Sandbox, shellQuote } from '@corral/sdk';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import { keyValues } from '../../option-parsers.js';

export interface ExecFlags {
  interactive?: boolean;
  tty?: boolean;
  workdir?: string;
  env?: string[];
  user?: string;
  timeout?: string;
}

/** One argument is a shell string as given; several are quoted into one. */
function shellCommand(argv: string[]): string {
  return argv.length === 1 ? (argv[0] as string) : argv.map((a) => (/^[A-Za-z0-9_./:=@%+,-]+$/.test(a) ? a : shellQuote(a))).join(' ');
}

/** Runs an interactive session: stdin forwarded, raw mode and SIGWINCH resizes on a terminal. Resolves with the exit code. */
async function interactive(sandbox: Sandbox, argv: string[], flags: ExecFlags, env: Record<string, string> | undefined): Promise<number> {
  const tty = flags.tty === true;
  const stdin = process.stdin;
  const size = (): { rows: number; cols: number } => ({ rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 });
  const session: ExecSession = await sandbox.execStream(argv.length === 1 && !tty ? (argv[0] as string) : argv, {
    ...(tty ? { tty: size() } : {}),
    stdin: true,
    ...(flags.workdir ? { cwd: flags.workdir } : {}),
    ...(env ? { env } : {}),
    ...(flags.user ? { user: flags.user } : {}),
    ...(flags.timeout ? { timeout: Number(flags.timeout) } : {}),
    onStdout: (chunk) => process.stdout.write(chunk),
    onStderr: (chunk) => process.stderr.write(chunk),
  });
  const rawMode = tty && stdin.isTTY === true;
  if (rawMode) stdin.setRawMode(true);
  const onData = (chunk: Buffer): void => session.write(chunk);
  const onEnd = (): void => session.closeStdin();
  const onResize = (): void => {
    const { rows, cols } = size();
    session.resize(rows, cols);
  };
  stdin.on('data', onData);
  stdin.once('end', onEnd);
  process.on('SIGWINCH', onResize);
  try {
    return (await session.wait()).exitCode;
  } finally {
    process.off('SIGWINCH', onResize);
    stdin.off('data', onData);
    stdin.off('end', onEnd);
    if (rawMode) stdin.setRawMode(false);
    stdin.pause();
  }
}

/** `corral sandbox exec ID -- CMD…`: exits with the command's exit code; `-it` for an interactive terminal. */
export async function execInSandbox(id: string, argv: string[], flags: ExecFlags, globals: GlobalOptions): Promise<void> {
  if (argv.length === 0) throw new Error('give the command to run after --, e.g. `corral sandbox exec <id> -- ls -la`');
  const client = clientFor(globals);
  const handle = await Sandbox.connect(client, id);
  const env = keyValues(flags.env, '--env');
  if (flags.interactive || flags.tty) {
    process.exitCode = await interactive(handle, argv, flags, env);
    return;
  }
  const result = await handle.exec(shellCommand(argv), {
    ...(flags.workdir ? { cwd: flags.workdir } : {}),
    ...(env ? { env } : {}),
    ...(flags.user ? { user: flags.user } : {}),
    ...(flags.timeout ? { timeout: Number(flags.timeout) } : {}),
  });
  if (globals.output === 'json') process.stdout.write(`${JSON.stringify({ stdout: result.stdout, stderr: result.stderr, exit_code: result.exitCode }, null, 2)}\n`);
  else {
    process.stdout.write(result.stdout);
    process.stderr.write(result.stderr);
  }
  process.exitCode = result.exitCode;
}

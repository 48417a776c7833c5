import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Sandbox } from '@corral/sdk';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

const execFileAsync = promisify(execFile);

/** Generates an ephemeral ed25519 key pair in `dir`; returns the private key's path and the public key. */
async function ephemeralKey(dir: string, comment: string): Promise<{ keyPath: string; publicKey: string }> {
  const keyPath = join(dir, 'id_ed25519');
  try {
    await execFileAsync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', keyPath]);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error('ssh-keygen was not found: install the OpenSSH client (e.g. apt-get install openssh-client)');
    throw new Error(`ssh-keygen failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  return { keyPath, publicKey: (await readFile(`${keyPath}.pub`, 'utf8')).trim() };
}

/** Runs `ssh` with inherited stdio; resolves with its exit code (128 + signal number if it was killed). */
function runSsh(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: 'inherit' });
    // ssh handles Ctrl-C itself on a terminal; keep this process alive to clean up afterwards.
    const ignore = (): void => undefined;
    process.on('SIGINT', ignore);
    const done = (): void => {
      process.off('SIGINT', ignore);
    };
    child.once('error', (error: NodeJS.ErrnoException) => {
      done();
      reject(error.code === 'ENOENT' ? new Error('ssh was not found: install the OpenSSH client (e.g. apt-get install openssh-client)') : error);
    });
    child.once('exit', (code, signal) => {
      done();
      resolve(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1));
    });
  });
}

/**
 * `corral sandbox ssh ID [-- SSH ARGS…]`: an ephemeral ed25519 key, an SSH session authorised
 * for it through the gateway, then `ssh` with inherited stdio. Exits with ssh's exit code; the
 * session and the key are deleted afterwards.
 */
export async function sshIntoSandbox(id: string, sshArgs: string[], options: { ttl: string }, globals: GlobalOptions): Promise<void> {
  const ttlSeconds = Number(options.ttl);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 60 || ttlSeconds > 3600) throw new Error(`--ttl must be 60..3600 seconds, got "${options.ttl}"`);
  const handle = await Sandbox.connect(clientFor(globals), id);
  const dir = await mkdtemp(join(tmpdir(), 'corral-ssh-'));
  try {
    const { keyPath, publicKey } = await ephemeralKey(dir, `corral-${id}`);
    const session = await handle.createSshSession({ ttlSeconds });
    try {
      await session.authorize(publicKey);
      process.exitCode = await runSsh([
        '-i',
        keyPath,
        '-p',
        String(session.port),
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'IdentitiesOnly=yes',
        '-o',
        'LogLevel=ERROR',
        `${session.session_id}@${session.host}`,
        ...sshArgs,
      ]);
    } finally {
      await session.close().catch(() => undefined);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

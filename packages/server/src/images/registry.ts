import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RegistryCredentials } from '../runtime/registry/registry-client.js';
import { requireTool, runTool } from './tools.js';

/** Options for {@link startLocalRegistry}. */
export interface LocalRegistryOptions {
  /** Port on 127.0.0.1; default: a free one. */
  readonly port?: number;
  /** Blob storage directory; default: a temporary directory removed by `stop()`. */
  readonly storageDir?: string;
  /** Require these credentials (htpasswd, bcrypt). */
  readonly credentials?: RegistryCredentials;
}

/** A running Debian `docker-registry` owned by this process. */
export interface LocalRegistry {
  /** `127.0.0.1:PORT`, the host part of image references. */
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
  /** Stops the registry and removes the directories it created. */
  stop(): Promise<void>;
}

/** Picks a free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** The registry config file: listens on loopback only, filesystem storage, optional htpasswd auth. */
export function registryConfig(port: number, storageDir: string, htpasswdFile?: string): string {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(storageDir)}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  if (htpasswdFile !== undefined) {
    lines.push('auth:', '  htpasswd:', '    realm: corral', `    path: ${JSON.stringify(htpasswdFile)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Resolves when `GET /v2/` answers 200 or 401, or rejects after `timeoutMs`. */
export async function waitForRegistry(endpoint: string, timeoutMs = 10_000, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child !== undefined && child.exitCode !== null) throw new Error(`docker-registry exited with code ${child.exitCode}`);
    try {
      const response = await fetch(`http://${endpoint}/v2/`, { signal: AbortSignal.timeout(1000) });
      if (response.status === 200 || response.status === 401) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolveDelay) => setTimeout(resolveDelay, 100));
  }
  throw new Error(`registry at ${endpoint} did not answer within ${timeoutMs} ms (${last})`);
}

/**
 * Starts Debian's `docker-registry` on 127.0.0.1 as a child of this process, with its own config
 * (the packaged one wants htpasswd and listens on every address). For tests; the long-running
 * registries of `scripts/start-registry.sh` are separate.
 */
export async function startLocalRegistry(options: LocalRegistryOptions = {}): Promise<LocalRegistry> {
  const binary = requireTool('docker-registry');
  const port = options.port ?? (await freePort());
  const workDir = await mkdtemp(join(tmpdir(), 'corral-registry-'));
  const storageDir = options.storageDir ?? join(workDir, 'storage');
  await mkdir(storageDir, { recursive: true });
  let htpasswdFile: string | undefined;
  if (options.credentials) {
    const { stdout } = await runTool('htpasswd', ['-nbB', options.credentials.username, options.credentials.password]);
    htpasswdFile = join(workDir, 'htpasswd');
    await writeFile(htpasswdFile, `${stdout.trim()}\n`, { mode: 0o600 });
  }
  const configFile = join(workDir, 'config.yml');
  await writeFile(configFile, registryConfig(port, storageDir, htpasswdFile));
  const child = spawn(binary, ['serve', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  const endpoint = `127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolveExit) => child.once('exit', resolveExit));
      child.kill('SIGTERM');
      await exited;
    }
    await rm(workDir, { recursive: true, force: true });
  };
  try {
    await waitForRegistry(endpoint, 10_000, child);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}; stderr: ${stderr.trim()}`);
  }
  if (child.pid === undefined) throw new Error('docker-registry did not start');
  return { endpoint, port, pid: child.pid, stop };
}

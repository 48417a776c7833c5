import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../packages/cli/src/main.ts', import.meta.url));

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

/** `corral serve` children still running: stopped when the bench ends, however it ends. */
const children = new Set<ChildProcess>();
let exitHandlersInstalled = false;

/**
 * A bench stopped by a signal (a `timeout`, Ctrl-C) must not leave its server running: it would
 * keep its sandboxes, its NFLOG group and the host's CPU busy under the next run.
 */
function stopChildrenOnExit(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  const stopAll = (): void => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  };
  process.once('exit', stopAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stopAll();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}

/** A `corral serve` child process and its base URL. */
export interface ServedCorral {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `corral serve` in its own process (so load generation does not share its event loop) and waits for /healthz. */
export async function serveCorral(env: NodeJS.ProcessEnv): Promise<ServedCorral> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', CLI, 'serve'], {
    env: { ...process.env, CORRAL_PORT: String(port), CORRAL_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  stopChildrenOnExit();
  children.add(child);
  child.once('exit', () => children.delete(child));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`corral serve exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/healthz`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('corral serve did not become healthy');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

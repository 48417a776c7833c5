import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool } from './run-tool.js';

/** The agent's C source (`packages/server/agent/corral-agent.c`), the same path from src/ and dist/. */
export const AGENT_SOURCE = fileURLToPath(new URL('../../../agent/corral-agent.c', import.meta.url));

const building = new Map<string, Promise<string>>();

/**
 * Returns the path of the compiled `corral-agent` (the sandbox's PID 1 and its host-side shim),
 * compiling it with the host's C compiler (`cc -static`, from Debian's gcc and libc6-dev) into
 * `<dir>/corral-agent-<source hash>` when that file does not exist yet. Concurrent callers share
 * one build; a build is written to a temporary file and renamed into place.
 */
export function ensureAgentBinary(dir: string): Promise<string> {
  let pending = building.get(dir);
  if (!pending) {
    pending = build(dir).finally(() => building.delete(dir));
    building.set(dir, pending);
  }
  return pending;
}

async function build(dir: string): Promise<string> {
  const source = await readFile(AGENT_SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const binary = join(dir, `corral-agent-${hash}`);
  if (existsSync(binary)) return binary;
  await mkdir(dir, { recursive: true });
  const tmp = `${binary}.${process.pid}.tmp`;
  try {
    await runTool('cc', ['-static', '-O2', '-Wall', '-o', tmp, AGENT_SOURCE]);
    await chmod(tmp, 0o755);
    await rename(tmp, binary);
  } catch (error) {
    await rm(tmp, { force: true });
    throw new Error(`compiling ${AGENT_SOURCE} failed (bash scripts/ensure-oci.sh installs gcc and libc6-dev): ${(error as Error).message}`, { cause: error });
  }
  return binary;
}

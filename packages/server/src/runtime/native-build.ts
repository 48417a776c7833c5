import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool } from './run-tool.js';

/** The native sources (`packages/server/agent/`), the same path from src/ and dist/. */
const SOURCES = fileURLToPath(new URL('../../agent/', import.meta.url));

/** A native program the driver compiles on first use. */
interface NativeProgram {
  name: string;
  /** Compiler flags before `-o`; libraries after the source. */
  flags: string[];
  libraries: string[];
  /** The Debian packages that provide what it needs, for the error message. */
  packages: string;
}

/** Each sandbox's PID 1 and its host-side shim: static, so it runs in any image. */
const AGENT: NativeProgram = { name: 'corral-agent', flags: ['-static', '-O2', '-Wall'], libraries: [], packages: 'gcc and libc6-dev' };
/** Compiles seccomp profiles to BPF on the host. */
const SECCOMP: NativeProgram = { name: 'corral-seccomp', flags: ['-O2', '-Wall'], libraries: ['-lseccomp'], packages: 'gcc and libseccomp-dev' };
/** Reads an NFLOG group for the egress connection log (runtime/egress/nflog-reader.ts); libc and kernel headers only. */
const NFLOG: NativeProgram = { name: 'corral-nflog', flags: ['-O2', '-Wall'], libraries: [], packages: 'gcc, libc6-dev and linux-libc-dev' };

const building = new Map<string, Promise<string>>();

/**
 * Returns the path of the compiled `corral-agent` (the sandbox's PID 1 and its host-side shim,
 * `packages/server/agent/corral-agent.c`), compiling it into `<dir>` on first use.
 */
export function ensureAgentBinary(dir: string): Promise<string> {
  return ensureBuilt(dir, AGENT);
}

/** Returns the path of the compiled `corral-seccomp` (profile → BPF), compiling it on first use. */
export function ensureSeccompCompiler(dir: string): Promise<string> {
  return ensureBuilt(dir, SECCOMP);
}

/** Returns the path of the compiled `corral-nflog` (NFLOG group → one line per logged packet), compiling it on first use. */
export function ensureNflogReceiver(dir: string): Promise<string> {
  return ensureBuilt(dir, NFLOG);
}

/**
 * Compiles `<name>.c` with the host's C compiler into `<dir>/<name>-<source hash>` unless that file
 * exists. Concurrent callers share one build; the output is written to a temporary file and
 * renamed into place, so a reader never sees half a binary.
 */
function ensureBuilt(dir: string, program: NativeProgram): Promise<string> {
  const key = `${dir}\0${program.name}`;
  let pending = building.get(key);
  if (!pending) {
    pending = build(dir, program).finally(() => building.delete(key));
    building.set(key, pending);
  }
  return pending;
}

async function build(dir: string, program: NativeProgram): Promise<string> {
  const sourcePath = join(SOURCES, `${program.name}.c`);
  const source = await readFile(sourcePath);
  const hash = createHash('sha256').update(source).update(program.flags.join(' ')).digest('hex').slice(0, 16);
  const binary = join(dir, `${program.name}-${hash}`);
  if (existsSync(binary)) return binary;
  await mkdir(dir, { recursive: true });
  const tmp = `${binary}.${process.pid}.tmp`;
  try {
    await runTool('cc', [...program.flags, '-o', tmp, sourcePath, ...program.libraries]);
    await chmod(tmp, 0o755);
    await rename(tmp, binary);
  } catch (error) {
    await rm(tmp, { force: true });
    throw new Error(`compiling ${sourcePath} failed (bash scripts/ensure-oci.sh installs ${program.packages}): ${(error as Error).message}`, { cause: error });
  }
  return binary;
}

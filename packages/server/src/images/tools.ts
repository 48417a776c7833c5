import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** A host tool the image library shells out to, with the Debian package and script that install it. */
export interface ToolInfo {
  /** Debian package that ships the tool. */
  readonly debianPackage: string;
  /** Repository script that installs the package. */
  readonly installedBy: string;
}

/** The host tools this library may need. */
export const TOOLS: Readonly<Record<string, ToolInfo>> = {
  mmdebstrap: { debianPackage: 'mmdebstrap', installedBy: 'scripts/build-images.sh' },
  umoci: { debianPackage: 'umoci', installedBy: 'scripts/build-images.sh' },
  skopeo: { debianPackage: 'skopeo', installedBy: 'scripts/build-images.sh' },
  'docker-registry': { debianPackage: 'docker-registry', installedBy: 'scripts/build-images.sh' },
  htpasswd: { debianPackage: 'apache2-utils', installedBy: 'scripts/build-images.sh' },
  busybox: { debianPackage: 'busybox-static', installedBy: 'scripts/build-images.sh' },
};

/** Raised when a host tool is not installed; the message names the package and the script that installs it. */
export class MissingToolError extends Error {
  /** The missing executable's name. */
  readonly tool: string;
  constructor(tool: string) {
    const info = TOOLS[tool];
    super(
      info
        ? `required tool '${tool}' is not installed (Debian package '${info.debianPackage}'); run 'bash ${info.installedBy}' to install it`
        : `required tool '${tool}' is not installed`,
    );
    this.name = 'MissingToolError';
    this.tool = tool;
  }
}

/** Raised when a host tool exits non-zero; carries its stderr. */
export class ToolFailedError extends Error {
  /** The tool's exit code, or null when a signal ended it. */
  readonly exitCode: number | null;
  /** What the tool wrote on stderr (last 4 KiB). */
  readonly stderr: string;
  constructor(tool: string, args: readonly string[], exitCode: number | null, stderr: string) {
    super(`${tool} ${args.join(' ')} failed (exit ${exitCode ?? 'signal'}): ${stderr.trim().slice(-2000)}`);
    this.name = 'ToolFailedError';
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Returns the absolute path of `tool` on `$PATH` (plus the sbin directories), or undefined. */
export function findTool(tool: string): string | undefined {
  const dirs = (process.env['PATH'] ?? '').split(delimiter).concat(['/usr/local/sbin', '/usr/sbin', '/sbin']);
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Returns the absolute path of `tool`, or throws {@link MissingToolError}. */
export function requireTool(tool: string): string {
  const found = findTool(tool);
  if (found === undefined) throw new MissingToolError(tool);
  return found;
}

/** Output of a finished tool run. */
export interface ToolResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a host tool to completion; rejects with {@link MissingToolError} or {@link ToolFailedError}. */
export function runTool(
  tool: string,
  args: readonly string[],
  options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {},
): Promise<ToolResult> {
  const path = requireTool(tool);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(path, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let errLength = 0;
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      err.push(chunk);
      errLength += chunk.length;
      while (errLength > 64 * 1024 && err.length > 1) errLength -= err.shift()?.length ?? 0;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) resolvePromise({ stdout, stderr });
      else reject(new ToolFailedError(tool, args, code, stderr));
    });
  });
}

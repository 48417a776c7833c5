import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { Readable, Writable } from 'node:stream';
import type { ExecExit, ExecProcess, ExecRequest } from '../runtime.js';
import { capabilitiesFor } from './oci-spec.js';
import { runTool } from './run-tool.js';

/** Environment variable marking every process an exec starts, so `kill()` finds the whole tree. */
export const EXEC_MARKER_ENV = 'CORRAL_EXEC_ID';

/** What an exec needs to know about its sandbox. */
export interface ExecTarget {
  runtimeBinary: string;
  runcRoot: string;
  containerId: string;
  /** Host path of the container's root filesystem (to read /etc/passwd and /etc/group). */
  rootfs: string;
  /** Directory for per-exec process.json files. */
  scratchDir: string;
  /** The sandbox's environment (image env merged with the spec env). */
  env: string[];
  workingDir: string;
  /** Host pids of every process in the sandbox (its cgroup). */
  listPids(): Promise<number[]>;
}

/**
 * The parent of a non-PTY exec (perl-base is in every Debian system): makes itself a child
 * subreaper, runs `runc exec --detach` with its own stdio (so the sandbox process writes straight
 * into the caller's pipes, no copy through runc), and, since runc does not reap detached processes,
 * receives the exec'd process when its runc parents exit and waits for it. Exits with the
 * process's status (128+N when killed by signal N), or 126 when runc could not start it.
 * Arguments: prctl syscall number, pid file, then the runc command line.
 */
const EXEC_REAPER = `
use strict;
my $nr = shift @ARGV;
syscall($nr, 36, 1, 0, 0, 0) == 0 or die "corral exec: PR_SET_CHILD_SUBREAPER: $!\n";
my $pidfile = shift @ARGV;
my $runc = fork() // die "corral exec: fork: $!\n";
if ($runc == 0) { { exec { $ARGV[0] } @ARGV; } print STDERR "corral exec: $ARGV[0]: $!\n"; exit 127; }
my (%status, $target);
sub code { my $s = shift; return ($s & 127) ? 128 + ($s & 127) : ($s >> 8); }
while (1) {
  my $pid = waitpid(-1, 0);
  exit(defined $target ? 137 : 126) if $pid <= 0;
  if ($pid == $runc) {
    exit 126 if $? != 0;
    open(my $fh, '<', $pidfile) or exit 126;
    $target = <$fh>; close $fh;
    exit 126 unless defined $target && $target =~ /^([0-9]+)/;
    $target = $1;
  } else {
    $status{$pid} = $?;
  }
  exit code($status{$target}) if defined $target && exists $status{$target};
}
`;

/** prctl(2)'s syscall number, which the reaper needs (no POSIX module: it costs ~9 ms to load). */
const PRCTL_SYSCALL: Partial<Record<string, number>> = { x64: 157, arm64: 167 };

/** Resolved process identity. */
interface Identity {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

/** Starts `request` with `runc exec` in the foreground and returns a handle on it. */
export async function startOciExec(target: ExecTarget, request: ExecRequest): Promise<ExecProcess> {
  const execId = randomUUID();
  const identity = await resolveUser(target.rootfs, request.user);
  const env = new Map<string, string>();
  for (const entry of target.env) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  if (!env.has('HOME')) env.set('HOME', identity.home);
  if (request.tty && !env.has('TERM')) env.set('TERM', 'xterm');
  for (const [k, v] of Object.entries(request.env ?? {})) env.set(k, v);
  env.set(EXEC_MARKER_ENV, execId);
  const processSpec = {
    terminal: request.tty !== undefined,
    ...(request.tty ? { consoleSize: { height: request.tty.rows, width: request.tty.cols } } : {}),
    user: { uid: identity.uid, gid: identity.gid, additionalGids: identity.additionalGids },
    args: request.argv,
    env: [...env].map(([k, v]) => `${k}=${v}`),
    cwd: request.cwd ?? (target.workingDir || '/'),
    capabilities: capabilitiesFor(identity.uid),
    noNewPrivileges: true,
  };
  const processFile = join(target.scratchDir, `exec-${execId}.json`);
  await writeFile(processFile, JSON.stringify(processSpec), { mode: 0o600 });
  const runcArgs = ['--root', target.runcRoot, 'exec', '--process', processFile];
  let child: ChildProcess;
  if (request.tty) {
    // runc and crun relay a PTY in the foreground only with a terminal on their own stdin: `script`
    // gives them one (a host PTY, set raw and to the requested size, which they copy to the
    // sandbox's PTY). `resize()` then sizes the sandbox's PTY directly.
    runcArgs.push('--tty', target.containerId);
    const shellLine = `stty raw -echo rows ${request.tty.rows} cols ${request.tty.cols} && exec ${[target.runtimeBinary, ...runcArgs].map(shellQuote).join(' ')}`;
    child = spawn('script', ['-q', '-f', '-e', '-c', shellLine, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, SHELL: '/bin/sh' } });
  } else {
    const pidFile = join(target.scratchDir, `exec-${execId}.pid`);
    runcArgs.push('--detach', '--pid-file', pidFile, target.containerId);
    const prctl = PRCTL_SYSCALL[process.arch];
    if (prctl === undefined) throw new Error(`exec is not supported on ${process.arch}`);
    child = spawn('perl', ['-e', EXEC_REAPER, String(prctl), pidFile, target.runtimeBinary, ...runcArgs], {
      stdio: [request.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    child.once('close', () => void rm(pidFile, { force: true }));
  }
  return new OciExecProcess(target, child, execId, request, processFile);
}

class OciExecProcess implements ExecProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable | null;
  private readonly exited: Promise<ExecExit>;

  constructor(
    private readonly target: ExecTarget,
    private readonly child: ChildProcess,
    private readonly execId: string,
    private readonly request: ExecRequest,
    processFile: string,
  ) {
    const stdout = detachable(child.stdout as Readable);
    const stderr = detachable(child.stderr as Readable);
    if (request.tty) {
      // script's own stderr is not the sandbox's: the PTY carries everything on stdout.
      const err = new PassThrough();
      err.end();
      stderr.resume();
      this.stderr = err;
    } else {
      this.stderr = stderr;
    }
    this.stdout = stdout;
    this.stdin = request.stdin ? (child.stdin as Writable) : null;
    child.stdin?.on('error', () => undefined);
    let spawnError = '';
    const runtimeStderr: string[] = [];
    if (request.tty) stderr.on('data', (c: Buffer) => runtimeStderr.push(c.toString()));
    this.exited = new Promise<ExecExit>((resolve) => {
      child.once('error', (error) => {
        spawnError = String(error);
        this.stderr.emit('error', error);
      });
      child.once('exit', (code, signal) => {
        void rm(processFile, { force: true });
        const exit = spawnError !== '' ? 126 : code !== null ? code : 128 + signalNumber(signal);
        // Background processes the exec started may still hold its stdout/stderr: like Docker, the
        // exec's streams end once its main process has exited (after a short drain), and what the
        // background processes write later is dropped.
        const ended = Promise.all([stdout.done, stderr.done]);
        const timer = setTimeout(() => {
          stdout.cut();
          stderr.cut();
        }, STREAM_DRAIN_MS);
        void ended.then(() => {
          clearTimeout(timer);
          resolve({ exitCode: exit });
        });
      });
    });
  }

  wait(): Promise<ExecExit> {
    return this.exited;
  }

  /**
   * Signals every process of the sandbox whose environment carries this exec's marker, and the
   * process group each leads, from the host (no second exec). Repeats for SIGKILL to catch forks.
   */
  /**
   * Waits (up to ~2 s) until a process of this exec exists in the sandbox: the runtime starts it
   * asynchronously, and a signal sent before then would find nothing. False once the exec finished.
   */
  private async started(): Promise<boolean> {
    for (let attempt = 0; attempt < 100; attempt++) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return false;
      if ((await this.markedPids()).length > 0) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!(await this.started())) return;
    for (let round = 0; round < 3; round++) {
      const found = await this.markedPids();
      if (found.length === 0) return;
      for (const pid of found) {
        try {
          process.kill(-pid, signal);
        } catch {
          // Not a group leader, or gone.
        }
      }
      for (const pid of found) {
        try {
          process.kill(pid, signal);
        } catch {
          // Gone.
        }
      }
      if (signal !== 'SIGKILL') return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Sets the size of the sandbox-side PTY directly from the host (`stty -F /proc/<pid>/fd/0` on a
   * process of this exec that has the PTY as stdin); the kernel sends SIGWINCH to its foreground
   * process group. Works the same with runc and crun (crun does not forward SIGWINCH).
   */
  async resize(rows: number, cols: number): Promise<void> {
    if (this.request.tty === undefined) return;
    for (let attempt = 0; attempt < 50; attempt++) {
      for (const pid of await this.markedPids()) {
        const link = await readlink(`/proc/${pid}/fd/0`).catch(() => '');
        if (!link.startsWith('/dev/pts/')) continue;
        await runTool('stty', ['-F', `/proc/${pid}/fd/0`, 'rows', String(rows), 'cols', String(cols)]);
        return;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Host pids of the sandbox processes that carry this exec's marker. */
  private async markedPids(): Promise<number[]> {
    const marker = Buffer.from(`\0${EXEC_MARKER_ENV}=${this.execId}\0`);
    const nul = Buffer.from([0]);
    const found: number[] = [];
    for (const pid of await this.target.listPids().catch(() => [] as number[])) {
      const environ = await readFile(`/proc/${pid}/environ`).catch(() => undefined);
      if (environ && Buffer.concat([nul, environ, nul]).indexOf(marker) >= 0) found.push(pid);
    }
    return found.sort((a, b) => a - b);
  }
}

/** How long an exec's streams may stay open after its main process exited. */
const STREAM_DRAIN_MS = 200;

/** A stream that can be ended early, with a promise for its end. */
type Detachable = Readable & { done: Promise<void>; cut(): void };

/** Wraps a child's output pipe so it can be ended while other processes still hold its write end. */
function detachable(source: Readable): Detachable {
  const out = new PassThrough() as PassThrough & { done: Promise<void>; cut(): void };
  source.pipe(out);
  out.done = new Promise<void>((resolve) => {
    out.once('end', () => resolve());
    out.once('close', () => resolve());
    out.once('error', () => resolve());
  });
  out.cut = () => {
    source.unpipe(out);
    source.destroy();
    // Whatever was already read is delivered; then EOF.
    if (!out.writableEnded) out.end();
  };
  return out;
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };
  return (signal && table[signal]) ?? 9;
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Resolves `root`, `uid`, `uid:gid`, `name` or `name:group` against the sandbox's /etc/passwd and
 * /etc/group (read without following symlinks, so an image cannot point them at host files).
 */
export async function resolveUser(rootfs: string, user: string | undefined): Promise<Identity> {
  if (user === undefined || user === '' || user === 'root' || user === '0') return { uid: 0, gid: 0, additionalGids: [], home: '/root' };
  const [userPart = '', groupPart] = user.split(':');
  const passwd = parseColonFile(await readNoFollow(rootfs, 'etc/passwd'));
  let uid: number;
  let gid: number | undefined;
  let home = '/';
  let name: string | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = passwd.find((f) => f[2] === userPart);
    if (entry) {
      gid = Number(entry[3]);
      home = entry[5] || '/';
      name = entry[0];
    }
  } else {
    const entry = passwd.find((f) => f[0] === userPart);
    if (!entry) throw new Error(`unable to find user ${userPart}: no matching entries in passwd file`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
    home = entry[5] || '/';
    name = entry[0];
  }
  const groups = parseColonFile(await readNoFollow(rootfs, 'etc/group'));
  if (groupPart !== undefined && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((f) => f[0] === groupPart);
      if (!g) throw new Error(`unable to find group ${groupPart}: no matching entries in group file`);
      gid = Number(g[2]);
    }
  }
  const additionalGids =
    name !== undefined ? groups.filter((f) => (f[3] ?? '').split(',').includes(name)).map((f) => Number(f[2])).filter((g) => Number.isInteger(g)) : [];
  return { uid, gid: gid ?? uid, additionalGids, home };
}

async function readNoFollow(rootfs: string, relative: string): Promise<string> {
  let handle;
  try {
    // O_NOFOLLOW covers the last component; /etc itself must not be a symlink either.
    const etc = await open(join(rootfs, 'etc'), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_DIRECTORY);
    await etc.close();
    handle = await open(join(rootfs, relative), constants.O_RDONLY | constants.O_NOFOLLOW);
    return await handle.readFile('utf8');
  } catch {
    return '';
  } finally {
    await handle?.close();
  }
}

function parseColonFile(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

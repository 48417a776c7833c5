import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { FastifyBaseLogger } from 'fastify';
import ssh2, { type Attributes, type FileEntry, type SFTPWrapper } from 'ssh2';
import { RuntimeError, type ExecProcess, type SandboxRuntime } from '../runtime/runtime.js';

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

/** `stat` format: mode in hex, size, uid, gid, atime, mtime, then the name. */
const STAT_FORMAT = '%f %s %u %g %X %Y %n';
/** Lists "$1" as one STAT_FORMAT line per entry, dot files included. */
const LIST_SCRIPT = `cd -- "$1" || exit 1; for f in * .[!.]* ..?*; do if [ -e "$f" ] || [ -L "$f" ]; then stat -c '${STAT_FORMAT}' -- "$f"; fi; done`;

/** A file opened for reading: fetched whole into a host temporary file at open. */
interface FileHandleState {
  kind: 'file';
  remote: string;
  local: string;
  fd: FileHandle;
}
/** A file opened for writing: written in place in the sandbox, nothing staged on the host. */
interface WriteHandleState {
  kind: 'write';
  remote: string;
  append: boolean;
  /** The exec a run of consecutive WRITEs streams into, and the file offset it has reached. */
  writer: { proc: ExecProcess; offset: number; stderr: Promise<string> } | null;
}
interface DirHandleState {
  kind: 'dir';
  entries: FileEntry[];
  sent: boolean;
}

interface Outcome {
  exitCode: number;
  stdout: string;
  stderr: string;
}

async function run(runtime: SandboxRuntime, runtimeId: string, argv: string[]): Promise<Outcome> {
  const proc = await runtime.exec(runtimeId, { argv });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout.on('data', (c: Buffer) => out.push(c));
  proc.stderr.on('data', (c: Buffer) => err.push(c));
  const { exitCode } = await proc.wait();
  return { exitCode, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/** Opens "$1" for writing (no truncation), moves to offset "$2" and copies stdin there; `append`: at the end. */
const WRITE_AT_SCRIPT =
  'if [ "$3" = append ]; then exec cat >> "$1"; fi; exec 1<>"$1" || exit 1; ' +
  'if [ "$2" -gt 0 ]; then dd bs=1 seek="$2" count=0 conv=notrunc 2>/dev/null || exit 1; fi; exec cat';
/** Prepares "$1" for an SFTP open for writing: truncates ("$2" = trunc), creates ("$3" = creat), or checks it exists. */
const OPEN_WRITE_SCRIPT =
  'if [ "$2" = trunc ]; then : > "$1" || exit 1; elif [ ! -e "$1" ]; then if [ "$3" = creat ]; then : > "$1" || exit 1; ' +
  'else echo "$1: No such file" >&2; exit 1; fi; fi';
/** Sets the size of "$1" to "$2" bytes (dd truncates its output file at the seek position). */
const TRUNCATE_SCRIPT = 'dd if=/dev/null of="$1" bs=1 seek="$2" 2>/dev/null || { echo "$1: cannot set size" >&2; exit 1; }';
/** Prints "$3" bytes of "$1" from offset "$2". */
const READ_AT_SCRIPT = 'tail -c +$(($2 + 1)) "$1" | head -c "$3"';

/** Collects a stream's text, keeping at most 4 KiB. */
function collectText(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    stream.on('data', (c: Buffer) => {
      if (text.length < 4096) text += c.toString('utf8');
    });
    stream.once('end', () => resolve(text));
    stream.once('close', () => resolve(text));
    stream.once('error', () => resolve(text));
  });
}

/** Collects a process's stdout into `chunks` and drains its stderr. */
function collectStdout(child: ExecProcess, chunks: Buffer[]): void {
  child.stdout.on('data', (c: Buffer) => chunks.push(c));
  child.stderr.resume();
}

function statusOf(stderr: string): number {
  if (/no such file|not found|can't cd|cannot access/i.test(stderr)) return STATUS_CODE.NO_SUCH_FILE;
  if (/permission denied|read-only/i.test(stderr)) return STATUS_CODE.PERMISSION_DENIED;
  return STATUS_CODE.FAILURE;
}

function parseStat(line: string): { attrs: Attributes; name: string } | null {
  const match = /^([0-9a-f]+) (\d+) (\d+) (\d+) (\d+) (\d+) (.*)$/.exec(line);
  if (!match) return null;
  return {
    attrs: {
      mode: parseInt(match[1] as string, 16),
      size: Number(match[2]),
      uid: Number(match[3]),
      gid: Number(match[4]),
      atime: Number(match[5]),
      mtime: Number(match[6]),
    },
    name: match[7] as string,
  };
}

function longname(name: string, a: Attributes): string {
  const type = (a.mode & 0o170000) === 0o040000 ? 'd' : (a.mode & 0o170000) === 0o120000 ? 'l' : '-';
  const bits = 'rwxrwxrwx'.split('').map((c, i) => (a.mode & (1 << (8 - i)) ? c : '-')).join('');
  const date = new Date(a.mtime * 1000).toISOString().slice(0, 16).replace('T', ' ');
  return `${type}${bits} 1 ${a.uid} ${a.gid} ${String(a.size).padStart(8)} ${date} ${name}`;
}

/**
 * Serves the SFTP subsystem (what `sftp`, and `scp` in OpenSSH 9+, speak) for one channel on top of
 * the runtime: metadata through small exec'd commands (`stat`, `mkdir`, `mv`, …). Writes go
 * straight into the file in the sandbox: consecutive WRITEs stream into one exec'd `cat` placed at
 * their offset (a WRITE elsewhere starts another), so an upload takes space only on the sandbox's
 * own disk. Files opened only for reading are fetched whole into a host temporary file at open.
 */
export function serveSftp(
  sftp: SFTPWrapper,
  target: Promise<{ runtime: SandboxRuntime; runtimeId: string } | string>,
  log: FastifyBaseLogger,
): void {
  // Handlers are registered at once (the client's first requests follow the INIT immediately)
  // and each waits for the sandbox to be resolved first.
  let runtime!: SandboxRuntime;
  let runtimeId!: string;
  const ready = target.then((resolved) => {
    if (typeof resolved === 'string') throw new Error(resolved);
    runtime = resolved.runtime;
    runtimeId = resolved.runtimeId;
  });
  ready.catch(() => sftp.end());
  let stagingDir: string | undefined;
  const staging = (): string => (stagingDir ??= mkdtempSync(join(tmpdir(), 'corral-sftp-')));
  const handles = new Map<number, FileHandleState | WriteHandleState | DirHandleState>();
  let nextHandle = 1;
  let home: Promise<string> | null = null;

  const resolvePath = async (path: string): Promise<string> => {
    home ??= run(runtime, runtimeId, ['/bin/sh', '-c', 'cd ~ 2>/dev/null || cd /; pwd']).then((o) => o.stdout.trim() || '/', () => '/');
    return posix.resolve(await home, path === '' ? '.' : path);
  };
  const newHandle = (state: FileHandleState | WriteHandleState | DirHandleState): Buffer => {
    const id = nextHandle++;
    handles.set(id, state);
    const buf = Buffer.alloc(4);
    buf.writeUInt32BE(id);
    return buf;
  };
  const handleOf = (buf: Buffer): FileHandleState | WriteHandleState | DirHandleState | undefined => (buf.length === 4 ? handles.get(buf.readUInt32BE(0)) : undefined);
  const statPath = async (path: string, follow: boolean): Promise<Attributes | number> => {
    const outcome = await run(runtime, runtimeId, ['stat', ...(follow ? ['-L'] : []), '-c', STAT_FORMAT, '--', path]);
    if (outcome.exitCode !== 0) return statusOf(outcome.stderr);
    return parseStat(outcome.stdout.trim())?.attrs ?? STATUS_CODE.FAILURE;
  };
  const simple = async (reqid: number, argv: string[]): Promise<void> => {
    const outcome = await run(runtime, runtimeId, argv);
    sftp.status(reqid, outcome.exitCode === 0 ? STATUS_CODE.OK : statusOf(outcome.stderr), outcome.exitCode === 0 ? undefined : outcome.stderr.trim());
  };
  /** Ends the current run of writes of a handle; throws with the sandbox's error when the write failed (e.g. its disk is full). */
  const flush = async (state: WriteHandleState): Promise<void> => {
    const writer = state.writer;
    if (!writer) return;
    state.writer = null;
    writer.proc.stdin?.end();
    const { exitCode } = await writer.proc.wait();
    if (exitCode !== 0) throw new Error(`writing ${state.remote} failed: ${(await writer.stderr).trim() || `exit ${exitCode}`}`);
  };
  const writeAt = async (state: WriteHandleState, offset: number, data: Buffer): Promise<void> => {
    if (state.writer && !state.append && state.writer.offset !== offset) await flush(state);
    if (!state.writer) {
      const proc = await runtime.exec(runtimeId, {
        argv: ['/bin/sh', '-c', WRITE_AT_SCRIPT, 'corral-sftp-write', state.remote, String(offset), state.append ? 'append' : 'at'],
        stdin: true,
      });
      proc.stdout.resume();
      state.writer = { proc, offset, stderr: collectText(proc.stderr) };
    }
    const writer = state.writer;
    const stdin = writer.proc.stdin;
    if (!stdin) throw new Error('exec did not provide stdin');
    await new Promise<void>((resolve, reject) => stdin.write(data, (error) => (error ? reject(error) : resolve())));
    writer.offset += data.length;
  };
  // Requests are answered one at a time, in the order they came: OpenSSH's scp keeps reading
  // past the first out-of-order READ reply and then truncates the file at that point.
  let queue: Promise<void> = ready.catch(() => undefined);
  const guard = (reqid: number, work: () => Promise<void>): void => {
    queue = queue.then(() => ready).then(work).catch((error: unknown) => {
      log.debug({ err: error }, 'sftp: request failed');
      const code = error instanceof RuntimeError && error.kind === 'NOT_FOUND' ? STATUS_CODE.NO_SUCH_FILE : STATUS_CODE.FAILURE;
      try {
        sftp.status(reqid, code, error instanceof Error ? error.message : String(error));
      } catch {
        // The channel is gone.
      }
    });
  };


  sftp.on('REALPATH', (reqid, path) =>
    guard(reqid, async () => {
      const full = await resolvePath(path);
      sftp.name(reqid, [{ filename: full, longname: full, attrs: {} as Attributes }]);
    }),
  );
  for (const [event, follow] of [['STAT', true], ['LSTAT', false]] as const) {
    sftp.on(event, (reqid: number, path: string) =>
      guard(reqid, async () => {
        const attrs = await statPath(await resolvePath(path), follow);
        if (typeof attrs === 'number') sftp.status(reqid, attrs);
        else sftp.attrs(reqid, attrs);
      }),
    );
  }
  sftp.on('OPEN', (reqid, filename, flags) =>
    guard(reqid, async () => {
      const remote = await resolvePath(filename);
      const writing = (flags & OPEN_MODE.WRITE) !== 0;
      const truncate = (flags & OPEN_MODE.TRUNC) !== 0;
      if ((flags & OPEN_MODE.EXCL) !== 0 && typeof (await statPath(remote, false)) !== 'number') {
        return sftp.status(reqid, STATUS_CODE.FAILURE, 'File exists');
      }
      if (writing) {
        const create = (flags & OPEN_MODE.CREAT) !== 0 ? 'creat' : 'existing';
        const prepared = await run(runtime, runtimeId, ['/bin/sh', '-c', OPEN_WRITE_SCRIPT, 'corral-sftp-open', remote, truncate ? 'trunc' : 'keep', create]);
        if (prepared.exitCode !== 0) return sftp.status(reqid, statusOf(prepared.stderr), prepared.stderr.trim());
        const append = (flags & OPEN_MODE.APPEND) !== 0;
        return sftp.handle(reqid, newHandle({ kind: 'write', remote, append, writer: null }));
      }
      const local = join(staging(), String(nextHandle));
      try {
        const file = await runtime.getFile(runtimeId, remote);
        await pipeline(file.stream, createWriteStream(local));
      } catch (error) {
        if (error instanceof RuntimeError && error.kind === 'NOT_FOUND') return sftp.status(reqid, STATUS_CODE.NO_SUCH_FILE);
        throw error;
      }
      const fd = await open(local, 'r');
      sftp.handle(reqid, newHandle({ kind: 'file', remote, local, fd }));
    }),
  );
  sftp.on('READ', (reqid, handle, offset, length) =>
    guard(reqid, async () => {
      const state = handleOf(handle);
      if (state?.kind === 'write') {
        // Reading a file open for writing: from the sandbox, after the writes so far.
        await flush(state);
        const outcome = await runtime.exec(runtimeId, { argv: ['/bin/sh', '-c', READ_AT_SCRIPT, 'corral-sftp-read', state.remote, String(offset), String(Math.min(length, 256 * 1024))] });
        const chunks: Buffer[] = [];
        collectStdout(outcome, chunks);
        const { exitCode } = await outcome.wait();
        const data = Buffer.concat(chunks);
        if (exitCode !== 0 && data.length === 0) return sftp.status(reqid, STATUS_CODE.FAILURE);
        if (data.length === 0) sftp.status(reqid, STATUS_CODE.EOF);
        else sftp.data(reqid, data);
        return;
      }
      if (!state || state.kind !== 'file') return sftp.status(reqid, STATUS_CODE.FAILURE, 'Bad handle');
      const buffer = Buffer.alloc(Math.min(length, 256 * 1024));
      const { bytesRead } = await state.fd.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) sftp.status(reqid, STATUS_CODE.EOF);
      else sftp.data(reqid, buffer.subarray(0, bytesRead));
    }),
  );
  sftp.on('WRITE', (reqid, handle, offset, data) =>
    guard(reqid, async () => {
      const state = handleOf(handle);
      if (!state || state.kind !== 'write') return sftp.status(reqid, STATUS_CODE.FAILURE, 'Bad handle');
      await writeAt(state, offset, data);
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('FSTAT', (reqid, handle) =>
    guard(reqid, async () => {
      const state = handleOf(handle);
      if (state?.kind === 'write') {
        await flush(state);
        const attrs = await statPath(state.remote, true);
        if (typeof attrs === 'number') sftp.status(reqid, attrs);
        else sftp.attrs(reqid, attrs);
        return;
      }
      if (!state || state.kind !== 'file') return sftp.status(reqid, STATUS_CODE.FAILURE, 'Bad handle');
      const stat = await state.fd.stat();
      const now = Math.floor(Date.now() / 1000);
      sftp.attrs(reqid, { mode: 0o100644, size: stat.size, uid: 0, gid: 0, atime: now, mtime: Math.floor(stat.mtimeMs / 1000) });
    }),
  );
  sftp.on('CLOSE', (reqid, handle) =>
    guard(reqid, async () => {
      const state = handleOf(handle);
      if (!state) return sftp.status(reqid, STATUS_CODE.FAILURE, 'Bad handle');
      handles.delete(handle.readUInt32BE(0));
      if (state.kind === 'file') {
        await state.fd.close();
        rmSync(state.local, { force: true });
      } else if (state.kind === 'write') {
        await flush(state);
      }
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('OPENDIR', (reqid, path) =>
    guard(reqid, async () => {
      const dir = await resolvePath(path);
      const outcome = await run(runtime, runtimeId, ['/bin/sh', '-c', LIST_SCRIPT, 'corral-ls', dir]);
      if (outcome.exitCode !== 0) return sftp.status(reqid, statusOf(outcome.stderr || 'No such file'));
      const entries = outcome.stdout
        .split('\n')
        .map(parseStat)
        .filter((e): e is { attrs: Attributes; name: string } => e !== null)
        .map(({ attrs, name }) => ({ filename: name, longname: longname(name, attrs), attrs }));
      sftp.handle(reqid, newHandle({ kind: 'dir', entries, sent: false }));
    }),
  );
  sftp.on('READDIR', (reqid, handle) => {
    const state = handleOf(handle);
    if (!state || state.kind !== 'dir') return sftp.status(reqid, STATUS_CODE.FAILURE, 'Bad handle');
    if (state.sent || state.entries.length === 0) return sftp.status(reqid, STATUS_CODE.EOF);
    state.sent = true;
    sftp.name(reqid, state.entries);
  });
  sftp.on('MKDIR', (reqid, path) => guard(reqid, async () => simple(reqid, ['mkdir', '--', await resolvePath(path)])));
  sftp.on('RMDIR', (reqid, path) => guard(reqid, async () => simple(reqid, ['rmdir', '--', await resolvePath(path)])));
  sftp.on('REMOVE', (reqid, path) => guard(reqid, async () => simple(reqid, ['rm', '--', await resolvePath(path)])));
  sftp.on('RENAME', (reqid, from, to) => guard(reqid, async () => simple(reqid, ['mv', '--', await resolvePath(from), await resolvePath(to)])));
  sftp.on('SYMLINK', (reqid, linkPath, targetPath) => guard(reqid, async () => simple(reqid, ['ln', '-s', '--', targetPath, await resolvePath(linkPath)])));
  sftp.on('READLINK', (reqid, path) =>
    guard(reqid, async () => {
      const outcome = await run(runtime, runtimeId, ['readlink', '--', await resolvePath(path)]);
      if (outcome.exitCode !== 0) return sftp.status(reqid, statusOf(outcome.stderr || 'No such file'));
      const target = outcome.stdout.replace(/\n$/, '');
      sftp.name(reqid, [{ filename: target, longname: target, attrs: {} as Attributes }]);
    }),
  );
  /** Applies a size (truncate or extend) and a mode; `path` null: a handle not open for writing, where only no-ops are accepted. */
  const setstat = (reqid: number, path: string | null, attrs: Attributes, handle?: WriteHandleState): void =>
    guard(reqid, async () => {
      if (handle) await flush(handle);
      if (path !== null && attrs.size !== undefined) {
        const sized = await run(runtime, runtimeId, ['/bin/sh', '-c', TRUNCATE_SCRIPT, 'corral-sftp-truncate', path, String(attrs.size)]);
        if (sized.exitCode !== 0) return sftp.status(reqid, statusOf(sized.stderr), sized.stderr.trim());
      }
      if (path !== null && attrs.mode !== undefined) return simple(reqid, ['chmod', (attrs.mode & 0o7777).toString(8), '--', path]);
      sftp.status(reqid, STATUS_CODE.OK);
    });
  sftp.on('SETSTAT', (reqid, path, attrs) => void resolvePath(path).then((p) => setstat(reqid, p, attrs)));
  // On a handle open for writing, size and mode apply to its file (scp sets the size last); otherwise a no-op.
  sftp.on('FSETSTAT', (reqid, handle, attrs) => {
    const state = handleOf(handle);
    if (state?.kind === 'write') setstat(reqid, state.remote, attrs, state);
    else setstat(reqid, null, attrs);
  });
  // The client's EOF ends the subsystem: close the channel from this side too.
  // OpenSSH's scp reports failure unless the channel carries exit status 0; ssh2's SFTP object has
  // no public call for it, so it goes through the protocol object underneath.
  sftp.on('end', () => {
    const internals = sftp as unknown as { _protocol?: { exitStatus(id: number, status: number): void }; outgoing?: { id: number; state: string } };
    if (internals._protocol && internals.outgoing && ['open', 'eof'].includes(internals.outgoing.state)) {
      internals._protocol.exitStatus(internals.outgoing.id, 0);
    }
    sftp.end();
  });
  sftp.on('close', () => {
    for (const state of handles.values()) {
      if (state.kind === 'file') void state.fd.close().catch(() => undefined);
      if (state.kind === 'write') void flush(state).catch(() => undefined);
    }
    handles.clear();
    if (stagingDir) rmSync(stagingDir, { recursive: true, force: true });
  });
}

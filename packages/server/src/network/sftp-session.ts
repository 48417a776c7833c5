import { posix } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import ssh2, { type Attributes, type FileEntry, type SFTPWrapper } from 'ssh2';
import { RuntimeError, type ExecProcess, type SandboxFileReader, SandboxReadError, type SandboxRuntime } from '../runtime/runtime.js';

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

/** `stat` format: mode in hex, size, uid, gid, atime, mtime, then the name. */
const STAT_FORMAT = '%f %s %u %g %X %Y %n';
/** Lists "$1" as one STAT_FORMAT line per entry, dot files included. */
const LIST_SCRIPT = `cd -- "$1" || exit 1; for f in * .[!.]* ..?*; do if [ -e "$f" ] || [ -L "$f" ]; then stat -c '${STAT_FORMAT}' -- "$f"; fi; done`;

/** A file opened only for reading: read in ranges straight from the sandbox, nothing staged on the host. */
interface FileHandleState {
  kind: 'file';
  remote: string;
  reader: SandboxFileReader;
}
/** A file opened for writing: written in place in the sandbox, nothing staged on the host. */
interface WriteHandleState {
  kind: 'write';
  remote: string;
  append: boolean;
  /** Reads of the file through this handle (after the writes so far). */
  reader: SandboxFileReader;
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
/** Checks that "$1" can be opened for reading and is not a directory. */
const OPEN_READ_SCRIPT = 'if [ -d "$1" ]; then echo "$1: Is a directory" >&2; exit 1; fi; exec 0<"$1"';
/** The most one READ answers (OpenSSH asks for 32 KiB at a time). */
const MAX_READ = 256 * 1024;
/** Open copies per SFTP channel: beyond this, the least recently read handle's copy stops (its next read starts another). */
const MAX_ACTIVE_READERS = 8;

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
 * own disk. Reads stream out of the file in the sandbox (`SandboxFileReader`: one exec'd `cat` per
 * run of sequential reads, started at their offset), so a download takes no space on the host and
 * memory stays bounded whatever the file's size.
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
  const handles = new Map<number, FileHandleState | WriteHandleState | DirHandleState>();
  let nextHandle = 1;
  let home: Promise<string> | null = null;
  /** Readers in the order they were last read from, most recent last. */
  let recentReaders: SandboxFileReader[] = [];
  const readFrom = (reader: SandboxFileReader, offset: number, length: number): Promise<Buffer | null> => {
    recentReaders = [...recentReaders.filter((r) => r !== reader && r.active), reader];
    while (recentReaders.length > MAX_ACTIVE_READERS) recentReaders.shift()?.close();
    return reader.read(offset, length);
  };

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
    state.reader.close();
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
        return sftp.handle(reqid, newHandle({ kind: 'write', remote, append, writer: null, reader: runtime.openFileReader(runtimeId, remote) }));
      }
      const readable = await run(runtime, runtimeId, ['/bin/sh', '-c', OPEN_READ_SCRIPT, 'corral-sftp-open', remote]);
      if (readable.exitCode !== 0) return sftp.status(reqid, statusOf(readable.stderr), readable.stderr.trim());
      sftp.handle(reqid, newHandle({ kind: 'file', remote, reader: runtime.openFileReader(runtimeId, remote) }));
    }),
  );
  sftp.on('READ', (reqid, handle, offset, length) =>
    guard(reqid, async () => {
      const state = handleOf(handle);
      if (!state || state.kind === 'dir') return sftp.status(reqid, STATUS_CODE.FAILURE, 'Bad handle');
      // Reading a file open for writing: after the writes so far.
      if (state.kind === 'write') await flush(state);
      let data: Buffer | null;
      try {
        data = await readFrom(state.reader, offset, Math.min(length, MAX_READ));
      } catch (error) {
        if (error instanceof SandboxReadError) return sftp.status(reqid, statusOf(error.stderr), error.message);
        throw error;
      }
      if (data === null || data.length === 0) sftp.status(reqid, STATUS_CODE.EOF);
      else sftp.data(reqid, data);
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
      if (!state || state.kind === 'dir') return sftp.status(reqid, STATUS_CODE.FAILURE, 'Bad handle');
      if (state.kind === 'write') await flush(state);
      const attrs = await statPath(state.remote, true);
      if (typeof attrs === 'number') sftp.status(reqid, attrs);
      else sftp.attrs(reqid, attrs);
    }),
  );
  sftp.on('CLOSE', (reqid, handle) =>
    guard(reqid, async () => {
      const state = handleOf(handle);
      if (!state) return sftp.status(reqid, STATUS_CODE.FAILURE, 'Bad handle');
      handles.delete(handle.readUInt32BE(0));
      if (state.kind !== 'dir') state.reader.close();
      if (state.kind === 'write') await flush(state);
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
      if (state.kind !== 'dir') state.reader.close();
      if (state.kind === 'write') void flush(state).catch(() => undefined);
    }
    handles.clear();
  });
}

import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { FastifyBaseLogger } from 'fastify';
import ssh2, { type Attributes, type FileEntry, type SFTPWrapper } from 'ssh2';
import { RuntimeError, type SandboxRuntime } from '../runtime/runtime.js';

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

/** `stat` format: mode in hex, size, uid, gid, atime, mtime, then the name. */
const STAT_FORMAT = '%f %s %u %g %X %Y %n';
/** Lists "$1" as one STAT_FORMAT line per entry, dot files included. */
const LIST_SCRIPT = `cd -- "$1" || exit 1; for f in * .[!.]* ..?*; do if [ -e "$f" ] || [ -L "$f" ]; then stat -c '${STAT_FORMAT}' -- "$f"; fi; done`;

interface FileHandleState {
  kind: 'file';
  remote: string;
  local: string;
  fd: FileHandle;
  dirty: boolean;
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
 * the runtime: metadata through small exec'd commands (`stat`, `mkdir`, `mv`, …), file contents
 * through `getFile`/`putFile` staged in a temporary file on the host (reads are fetched whole at
 * open; writes are sent on close).
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
  const staging = mkdtempSync(join(tmpdir(), 'corral-sftp-'));
  const handles = new Map<number, FileHandleState | DirHandleState>();
  let nextHandle = 1;
  let home: Promise<string> | null = null;

  const resolvePath = async (path: string): Promise<string> => {
    home ??= run(runtime, runtimeId, ['/bin/sh', '-c', 'cd ~ 2>/dev/null || cd /; pwd']).then((o) => o.stdout.trim() || '/', () => '/');
    return posix.resolve(await home, path === '' ? '.' : path);
  };
  const newHandle = (state: FileHandleState | DirHandleState): Buffer => {
    const id = nextHandle++;
    handles.set(id, state);
    const buf = Buffer.alloc(4);
    buf.writeUInt32BE(id);
    return buf;
  };
  const handleOf = (buf: Buffer): FileHandleState | DirHandleState | undefined => (buf.length === 4 ? handles.get(buf.readUInt32BE(0)) : undefined);
  const statPath = async (path: string, follow: boolean): Promise<Attributes | number> => {
    const outcome = await run(runtime, runtimeId, ['stat', ...(follow ? ['-L'] : []), '-c', STAT_FORMAT, '--', path]);
    if (outcome.exitCode !== 0) return statusOf(outcome.stderr);
    return parseStat(outcome.stdout.trim())?.attrs ?? STATUS_CODE.FAILURE;
  };
  const simple = async (reqid: number, argv: string[]): Promise<void> => {
    const outcome = await run(runtime, runtimeId, argv);
    sftp.status(reqid, outcome.exitCode === 0 ? STATUS_CODE.OK : statusOf(outcome.stderr), outcome.exitCode === 0 ? undefined : outcome.stderr.trim());
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
      const local = join(staging, String(nextHandle));
      const writing = (flags & OPEN_MODE.WRITE) !== 0;
      const truncate = (flags & OPEN_MODE.TRUNC) !== 0;
      if ((flags & OPEN_MODE.EXCL) !== 0 && typeof (await statPath(remote, false)) !== 'number') {
        return sftp.status(reqid, STATUS_CODE.FAILURE, 'File exists');
      }
      let loaded = false;
      if (!writing || !truncate) {
        try {
          const file = await runtime.getFile(runtimeId, remote);
          await pipeline(file.stream, createWriteStream(local));
          loaded = true;
        } catch (error) {
          const missing = error instanceof RuntimeError && error.kind === 'NOT_FOUND';
          if (!missing) throw error;
          if (!writing || (flags & OPEN_MODE.CREAT) === 0) return sftp.status(reqid, STATUS_CODE.NO_SUCH_FILE);
        }
      }
      const fd = await open(local, loaded ? 'r+' : 'w+');
      sftp.handle(reqid, newHandle({ kind: 'file', remote, local, fd, dirty: writing }));
    }),
  );
  sftp.on('READ', (reqid, handle, offset, length) =>
    guard(reqid, async () => {
      const state = handleOf(handle);
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
      if (!state || state.kind !== 'file') return sftp.status(reqid, STATUS_CODE.FAILURE, 'Bad handle');
      await state.fd.write(data, 0, data.length, offset);
      state.dirty = true;
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('FSTAT', (reqid, handle) =>
    guard(reqid, async () => {
      const state = handleOf(handle);
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
        try {
          if (state.dirty) await runtime.putFile(runtimeId, state.remote, createReadStream(state.local));
        } finally {
          rmSync(state.local, { force: true });
        }
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
  const setstat = (reqid: number, path: string | null, attrs: Attributes): void =>
    guard(reqid, async () => {
      if (path !== null && attrs.mode !== undefined) return simple(reqid, ['chmod', (attrs.mode & 0o7777).toString(8), '--', path]);
      sftp.status(reqid, STATUS_CODE.OK);
    });
  sftp.on('SETSTAT', (reqid, path, attrs) => void resolvePath(path).then((p) => setstat(reqid, p, attrs)));
  // Mode changes on an open handle are applied to nothing yet (the file is written at close); accepted as a no-op.
  sftp.on('FSETSTAT', (reqid, _handle, attrs) => setstat(reqid, null, attrs));
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
    for (const state of handles.values()) if (state.kind === 'file') void state.fd.close().catch(() => undefined);
    handles.clear();
    rmSync(staging, { recursive: true, force: true });
  });
}

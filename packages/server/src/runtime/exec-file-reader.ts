import { collectBounded } from './exec-files.js';
import { type ExecProcess, type SandboxFileReader, SandboxReadError, type SandboxRuntime } from './runtime.js';

/**
 * Streams "$1" from byte offset "$2" to its end: `dd` with a count of 0 only moves the shared
 * input's offset (a seek on a regular file, so a far offset costs nothing), then `cat` copies the
 * rest. Works with busybox and GNU `dd` alike (no `iflag=skip_bytes` needed).
 */
const READ_FROM_SCRIPT = 'exec 0<"$1" || exit 1; if [ "$2" -gt 0 ]; then dd bs=1 skip="$2" count=0 2>/dev/null || exit 1; fi; exec cat';

/** Read-ahead kept on the host per open copy: the copy pauses once this much is waiting to be asked for. */
const READ_AHEAD = 256 * 1024;

/** How long a copy that reached the end of the file answers reads past that end without a new exec. */
const EOF_MEMORY_MS = 1000;

/**
 * The exec a run of sequential reads is served from: its output is taken as `data` events into a
 * buffer of at most READ_AHEAD bytes (plus one chunk), pausing the exec's stdout (and with it, by
 * back-pressure, the `cat` in the sandbox) while it is full.
 */
class ReadStream {
  /** The file offset of the next byte a read takes. */
  position: number;
  ended = false;
  /** When the output ended (Date.now()), or 0. */
  endedAt = 0;
  readonly stderr: Promise<string>;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private wake: (() => void) | null = null;
  /** Set by stop(): later output is dropped, never buffered, so the stream drains to its end. */
  private stopped = false;

  constructor(
    readonly proc: ExecProcess,
    offset: number,
  ) {
    this.position = offset;
    this.stderr = collectBounded(proc.stderr);
    const stdout = proc.stdout;
    const finish = (): void => {
      if (!this.ended) this.endedAt = Date.now();
      this.ended = true;
      this.notify();
    };
    stdout.on('data', (chunk: Buffer) => {
      if (this.stopped) return;
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered >= READ_AHEAD) stdout.pause();
      this.notify();
    });
    stdout.once('end', finish);
    stdout.once('close', finish);
    stdout.once('error', finish);
  }

  /** Waits until `length` bytes are buffered (or the output ended) and takes up to that many; null once it ended empty. */
  async take(length: number): Promise<Buffer | null> {
    while (this.buffered < length && !this.ended) {
      this.proc.stdout.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    if (this.buffered === 0) return null;
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    const taken = all.subarray(0, Math.min(length, all.length));
    const rest = all.subarray(taken.length);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    this.position += taken.length;
    if (this.buffered < READ_AHEAD && !this.ended) this.proc.stdout.resume();
    return Buffer.from(taken);
  }

  /** True once the output ended and every byte of it was taken. */
  get drained(): boolean {
    return this.ended && this.buffered === 0;
  }

  /** Stops the copy and lets what is left of its output drain away. */
  stop(): void {
    this.stopped = true;
    this.chunks = [];
    this.buffered = 0;
    if (!this.ended) {
      void this.proc.kill('SIGKILL').catch(() => undefined);
      this.proc.stdout.resume();
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

/**
 * Reads byte ranges of one file inside a sandbox through exec, so every driver can share it (as
 * `exec-files.ts`), with nothing staged on the host. Sequential
 * reads are served from one exec'd `cat` started at the first offset asked for; a read at another
 * offset stops it and starts another there. At most READ_AHEAD bytes are read ahead of the
 * requests; back-pressure holds the rest in the sandbox, so memory stays bounded whatever the
 * file's size.
 */
export class ExecFileReader implements SandboxFileReader {
  private stream: ReadStream | null = null;

  constructor(
    private readonly runtime: Pick<SandboxRuntime, 'exec'>,
    private readonly runtimeId: string,
    /** Absolute path of the file in the sandbox. */
    readonly path: string,
  ) {}

  /**
   * Up to `length` bytes from `offset` (fewer only at the end of the file); null at or past the end.
   * Throws `SandboxReadError` when the sandbox cannot read the file.
   */
  async read(offset: number, length: number): Promise<Buffer | null> {
    if (length <= 0) return Buffer.alloc(0);
    const current = this.stream;
    // Clients ask past the end several times over (requests in flight): a copy that just reached
    // the end answers them.
    if (current?.drained && offset >= current.position && Date.now() - current.endedAt < EOF_MEMORY_MS) {
      await this.checkExit(current);
      return null;
    }
    if (current && current.position !== offset) this.close();
    this.stream ??= await this.start(offset);
    const stream = this.stream;
    const data = await stream.take(length);
    if (data) return data;
    await this.checkExit(stream);
    return null;
  }

  /** True while a copy is open (an exec in the sandbox and up to READ_AHEAD bytes on the host). */
  get active(): boolean {
    return this.stream !== null && !this.stream.drained;
  }

  /** Stops the current copy, if any (the next read starts another). */
  close(): void {
    this.stream?.stop();
    this.stream = null;
  }

  /** A copy whose output ended: the end of the file, or a failure its exit status tells (then it is dropped and this throws). */
  private async checkExit(stream: ReadStream): Promise<void> {
    const { exitCode } = await stream.proc.wait();
    if (exitCode === 0) return;
    if (this.stream === stream) this.stream = null;
    throw new SandboxReadError(this.path, exitCode, await stream.stderr);
  }

  private async start(offset: number): Promise<ReadStream> {
    const proc = await this.runtime.exec(this.runtimeId, {
      argv: ['/bin/sh', '-c', READ_FROM_SCRIPT, 'corral-sftp-read', this.path, String(offset)],
    });
    return new ReadStream(proc, offset);
  }
}


import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { ensureNflogReceiver } from '../native-build.js';

/** One packet netfilter logged to the group (`log group <G> prefix "<prefix>"`). */
export interface NflogRecord {
  /** The rule's log prefix, as written (bytes outside printable ASCII become `?`). */
  prefix: string;
  src: string;
  dst: string;
  /** `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `udplite`, `gre`, `esp`, `ah`, or the IP protocol number. */
  protocol: string;
  /** Destination port of TCP, UDP, SCTP and UDP-Lite packets; null for other protocols and later fragments. */
  dport: number | null;
  /** When the kernel logged it (its timestamp when it gave one, else when the receiver read it). */
  at: Date;
}

/** Totals since the reader was made, across receiver restarts. */
export interface NflogReaderStats {
  /** Records handed to `onRecord`. */
  records: number;
  /** Records the receiver dropped because this process did not read them fast enough. */
  dropped: number;
  /** Times the kernel could not queue log messages to the receiver's socket (packets lost, count unknown). */
  kernelOverruns: number;
  /** Times the receiver was started again after it died. */
  restarts: number;
}

/** Options of {@link NflogReader}. */
export interface NflogReaderOptions {
  /** The NFLOG group to read, 0–65535 (`CORRAL_EGRESS_NFLOG_GROUP`). */
  group: number;
  /** Called for each logged packet, synchronously, in order. What it throws goes to `onError`. */
  onRecord: (record: NflogRecord) => void;
  /** A compiled `corral-nflog`; default: compiled from `packages/server/agent/corral-nflog.c` into `binDir`. */
  binary?: string;
  /** Where the receiver is compiled when `binary` is not given. */
  binDir?: string;
  /** Read the group of this network namespace (a file such as `/run/netns/<name>`) instead of this process's. */
  netns?: string;
  /** Bytes of records the receiver holds while this process does not read; past it records are dropped (default 1 MiB). */
  bufferBytes?: number;
  /** Told when the receiver dies (it is restarted) or `onRecord` throws. Default: a process warning. */
  onError?: (error: Error) => void;
}

/** Why the receiver could not run. `group-busy`: another socket (another Corral server?) holds the group. */
export class NflogError extends Error {
  constructor(
    readonly reason: 'group-busy' | 'failed',
    message: string,
  ) {
    super(message);
    this.name = 'NflogError';
  }
}

/** Exit status of `corral-nflog` when the group is bound by another socket. */
const EXIT_GROUP_BUSY = 3;
/** A line longer than this is not one the receiver writes: the stream is corrupt. */
const MAX_LINE = 4096;
const FIRST_RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 5000;
/** A receiver that ran this long resets the restart delay. */
const STABLE_MS = 10_000;

type Receiver = ChildProcessByStdio<Writable, Readable, Readable>;

/**
 * Reads the packets netfilter logs to one NFLOG group, through `corral-nflog` (a small C program
 * run as a child; see its header for the line format), and hands each to `onRecord`.
 *
 * - A group has one reader per network namespace: `start()` rejects with an {@link NflogError}
 *   (`group-busy`) naming `CORRAL_EGRESS_NFLOG_GROUP` when another socket holds it.
 * - Rules may be added before or after `start()`; packets logged while no reader is bound are lost.
 * - When the receiver dies after `start()`, `onError` is told and it is started again (after
 *   100 ms, doubling up to 5 s while it keeps failing); nothing is logged meanwhile.
 * - Back-pressure: records are handed over synchronously as they are read; while this process is
 *   busy the receiver holds up to `bufferBytes` of them, then drops and counts (`stats.dropped`).
 * - `close()` ends the receiver (closing its stdin; SIGKILL after 2 s). It also ends when this
 *   process dies (parent-death signal, stdin end-of-file), so it never keeps the group bound.
 */
export class NflogReader {
  readonly #options: NflogReaderOptions;
  readonly #stats: NflogReaderStats = { records: 0, dropped: 0, kernelOverruns: 0, restarts: 0 };
  #binary: string | undefined;
  #receiver: Receiver | undefined;
  #ready = false;
  #started = false;
  #closed = false;
  #restartTimer: NodeJS.Timeout | undefined;
  #restartDelay = FIRST_RESTART_DELAY_MS;
  /** Drop totals of receivers that already ended; the running one reports its own from zero. */
  #droppedBefore = 0;
  #overrunsBefore = 0;

  constructor(options: NflogReaderOptions) {
    if (!Number.isInteger(options.group) || options.group < 0 || options.group > 65535) {
      throw new RangeError(`NFLOG group must be an integer from 0 to 65535, got ${options.group}`);
    }
    if (options.binary === undefined && options.binDir === undefined) throw new TypeError('NflogReader needs binary or binDir');
    this.#options = options;
  }

  /** Totals so far (a copy). */
  get stats(): NflogReaderStats {
    return { ...this.#stats };
  }

  /** True while a receiver has bound the group. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Process id of the running receiver, if any. */
  get receiverPid(): number | undefined {
    return this.#receiver?.pid;
  }

  /** Starts the receiver; resolves once the group is bound. Call once. */
  async start(): Promise<void> {
    if (this.#started) throw new Error('NflogReader.start() was already called');
    this.#started = true;
    this.#binary = this.#options.binary ?? (await ensureNflogReceiver(this.#options.binDir ?? ''));
    if (this.#closed) throw new NflogError('failed', 'NflogReader was closed before it started');
    await this.#launch();
  }

  /** Ends the receiver and stops restarting it; resolves once it has exited. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#restartTimer);
    const receiver = this.#receiver;
    if (receiver === undefined) return;
    const exited = new Promise<void>((resolve) => receiver.once('close', () => resolve()));
    receiver.stdin.end();
    const kill = setTimeout(() => receiver.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(kill);
  }

  /** Spawns one receiver; resolves when it is bound, rejects when it exits before. */
  #launch(): Promise<void> {
    const args = [String(this.#options.group)];
    if (this.#options.netns !== undefined) args.unshift(`--netns=${this.#options.netns}`);
    if (this.#options.bufferBytes !== undefined) args.unshift(`--buffer=${this.#options.bufferBytes}`);
    const receiver = spawn(this.#binary ?? '', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#receiver = receiver;
    const startedAt = Date.now();
    let stderr = '';
    let pending = '';
    let dropped = 0;
    let overruns = 0;
    receiver.stdin.on('error', () => {}); // EPIPE when it is gone; 'close' reports that
    receiver.stderr.setEncoding('utf8');
    receiver.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4096);
    });
    return new Promise<void>((resolve, reject) => {
      let bound = false;
      receiver.stdout.setEncoding('utf8');
      receiver.stdout.on('data', (chunk: string) => {
        pending += chunk;
        let newline: number;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          const fields = line.split('\t');
          if (fields[0] === 'P') {
            this.#deliver(fields);
          } else if (fields[0] === 'D') {
            dropped = Number(fields[1]) || 0;
            overruns = Number(fields[2]) || 0;
            this.#stats.dropped = this.#droppedBefore + dropped;
            this.#stats.kernelOverruns = this.#overrunsBefore + overruns;
          } else if (fields[0] === 'R' && !bound) {
            bound = true;
            this.#ready = true;
            resolve();
          }
        }
        if (pending.length > MAX_LINE) receiver.kill('SIGKILL');
      });
      receiver.once('error', (error) => {
        stderr += error.message;
      });
      receiver.once('close', (code, signal) => {
        this.#droppedBefore += dropped;
        this.#overrunsBefore += overruns;
        if (this.#receiver === receiver) this.#receiver = undefined;
        this.#ready = false;
        const how = code === null ? `signal ${signal}` : `status ${code}`;
        const error = new NflogError(code === EXIT_GROUP_BUSY ? 'group-busy' : 'failed', `corral-nflog exited (${how}): ${stderr.trim() || 'no message'}`);
        if (!bound) {
          reject(error);
          return;
        }
        if (this.#closed) return;
        this.#report(error);
        if (Date.now() - startedAt >= STABLE_MS) this.#restartDelay = FIRST_RESTART_DELAY_MS;
        this.#scheduleRestart();
      });
    });
  }

  #scheduleRestart(): void {
    const delay = this.#restartDelay;
    this.#restartDelay = Math.min(delay * 2, MAX_RESTART_DELAY_MS);
    this.#restartTimer = setTimeout(() => {
      if (this.#closed) return;
      this.#stats.restarts++;
      this.#launch().catch((error: unknown) => {
        if (this.#closed) return;
        this.#report(error as Error);
        this.#scheduleRestart();
      });
    }, delay);
    this.#restartTimer.unref();
  }

  #deliver(fields: string[]): void {
    const [, at, protocol, src, dst, port] = fields;
    if (at === undefined || protocol === undefined || src === undefined || dst === undefined || port === undefined) return;
    const record: NflogRecord = {
      prefix: fields.slice(6).join('\t'),
      src,
      dst,
      protocol,
      dport: port === '-' ? null : Number(port),
      at: Number.isFinite(Number(at)) ? new Date(Number(at)) : new Date(),
    };
    this.#stats.records++;
    try {
      this.#options.onRecord(record);
    } catch (error) {
      this.#report(error as Error);
    }
  }

  #report(error: Error): void {
    if (this.#options.onError) this.#options.onError(error);
    else process.emitWarning(error);
  }
}

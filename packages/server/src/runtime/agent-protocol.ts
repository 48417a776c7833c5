/**
 * The wire format between a driver and `corral-agent init` (PID 1 of every sandbox), one process
 * per connection: a Unix socket on the `oci` driver, TCP to the Pod's IP on the `kubernetes`
 * driver. Every frame is a 1-byte type, a 4-byte big-endian payload length, then the payload.
 *
 * On TCP the agent first sends `N` (32 random bytes, a fresh nonce) and honours nothing until the
 * first frame back is `A` with HMAC-SHA256(secret, "corral-agent-auth-v1" || nonce)
 * ({@link authFrame}); anything else closes the connection.
 *
 * Host → agent: `E` exec (once, first; or `U`: exec as a user the agent resolves), `I` stdin bytes, `C` close stdin, `S` signal (u32; the
 * agent signals the process group, else the process; for SIGKILL also every process carrying the
 * exec's `CORRAL_EXEC_ID` marker, through pidfds), `R` resize (u16 rows, u16 cols).
 * Agent → host: `P` pid inside the sandbox (u32), `1` stdout bytes, `2` stderr bytes, `X` exit
 * status (u32; 128+N when killed by signal N), after which the agent shuts its side down and the host
 * closes the connection (closing first could make the kernel reset the connection over frames the
 * agent had not read, and the host lose the exit frame).
 */

import { createHmac } from 'node:crypto';
import { createConnection } from 'node:net';
import type { Socket } from 'node:net';

/** Connects to an agent's socket; rejects with the connection error (ENOENT, ECONNREFUSED, …). */
export function connectAgent(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      socket.destroy();
      reject(error);
    });
  });
}

/** Frame type bytes. */
export const Frame = {
  exec: 0x45, // E
  execAsUser: 0x55, // U
  stdin: 0x49, // I
  stdinClose: 0x43, // C
  signal: 0x53, // S
  resize: 0x52, // R
  pid: 0x50, // P
  stdout: 0x31, // 1
  stderr: 0x32, // 2
  exit: 0x58, // X
  nonce: 0x4e, // N
  auth: 0x41, // A
} as const;

/** Length of the agent's challenge (`N`) on a TCP connection. */
export const NONCE_BYTES = 32;

/** What the HMAC of a TCP handshake covers before the nonce. */
const AUTH_CONTEXT = 'corral-agent-auth-v1';

/** The `A` frame answering the agent's nonce: HMAC-SHA256 under the sandbox's agent secret. */
export function authFrame(secret: string | Buffer, nonce: Buffer): Buffer {
  return frame(Frame.auth, createHmac('sha256', secret).update(AUTH_CONTEXT).update(nonce).digest());
}

const HEADER = 5;
/** Largest frame either side accepts (the agent drops a connection that sends more). */
export const MAX_FRAME = 64 * 1024 * 1024;

/** What the agent needs to start a process. */
export interface AgentExec {
  argv: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  groups: number[];
  tty?: { rows: number; cols: number };
  stdin: boolean;
  /** Run at a lower CPU priority (nice 10): host housekeeping that must not slow sandbox starts. */
  background?: boolean;
  /**
   * Start from the agent's own environment (the container's, as the kubernetes driver's Pods get
   * it), overlaid with `env`; HOME is not inherited for a `user` exec (the agent adds the user's).
   */
  inheritEnv?: boolean;
  /**
   * A user spec (`name`, `uid`, with `:group` or `:gid`) the agent resolves against the sandbox's
   * own /etc/passwd and /etc/group, replacing `uid`, `gid` and `groups` and adding `HOME` when
   * `env` has none. An unknown user, or a file that is not a regular file of at most 4 MiB, ends
   * the exec with status 126 and the reason on stderr.
   */
  user?: string;
}

/** One frame with its payload. */
export function frame(type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(HEADER);
  header[0] = type;
  header.writeUInt32BE(payload.length, 1);
  return payload.length === 0 ? header : Buffer.concat([header, payload]);
}

/** A frame carrying one unsigned 32-bit number. */
export function u32Frame(type: number, value: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(value >>> 0);
  return frame(type, payload);
}

/** A resize frame. */
export function resizeFrame(rows: number, cols: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt16BE(clamp16(rows), 0);
  payload.writeUInt16BE(clamp16(cols), 2);
  return frame(Frame.resize, payload);
}

/**
 * The exec frame: u32 flags (1 tty, 2 stdin, 4 background, 8 inherit env), u32 rows<<16|cols, u32 uid, u32 gid, u32 group
 * count, u32 argc, u32 envc, the groups (u32 each), then cwd, argv and env as NUL-terminated strings.
 * With `user`, the frame type is `U` and the user spec follows as one more string.
 */
export function execFrame(exec: AgentExec): Buffer {
  const user = exec.user !== undefined ? [exec.user] : [];
  for (const s of [exec.cwd, ...exec.argv, ...exec.env, ...user]) {
    if (s.includes('\0')) throw new Error('arguments, environment and working directory cannot contain NUL bytes');
  }
  if (exec.groups.length > 256) throw new Error('at most 256 supplementary groups');
  const head = Buffer.alloc(28 + 4 * exec.groups.length);
  head.writeUInt32BE((exec.tty ? 1 : 0) | (exec.stdin ? 2 : 0) | (exec.background ? 4 : 0) | (exec.inheritEnv ? 8 : 0), 0);
  head.writeUInt32BE(exec.tty ? ((clamp16(exec.tty.rows) << 16) | clamp16(exec.tty.cols)) >>> 0 : 0, 4);
  head.writeUInt32BE(exec.uid >>> 0, 8);
  head.writeUInt32BE(exec.gid >>> 0, 12);
  head.writeUInt32BE(exec.groups.length, 16);
  head.writeUInt32BE(exec.argv.length, 20);
  head.writeUInt32BE(exec.env.length, 24);
  exec.groups.forEach((g, i) => head.writeUInt32BE(g >>> 0, 28 + 4 * i));
  const strings = Buffer.from([exec.cwd, ...exec.argv, ...exec.env, ...user].map((s) => `${s}\0`).join(''), 'utf8');
  const payload = Buffer.concat([head, strings]);
  if (payload.length > MAX_FRAME) throw new Error(`the command and environment exceed ${MAX_FRAME} bytes`);
  return frame(exec.user !== undefined ? Frame.execAsUser : Frame.exec, payload);
}

/** Splits a byte stream into frames. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  /** Adds bytes and returns every frame they complete. Throws on an oversized frame. */
  push(chunk: Buffer): { type: number; payload: Buffer }[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: { type: number; payload: Buffer }[] = [];
    let offset = 0;
    while (this.pending.length - offset >= HEADER) {
      const length = this.pending.readUInt32BE(offset + 1);
      if (length > MAX_FRAME) throw new Error(`agent frame of ${length} bytes`);
      if (this.pending.length - offset < HEADER + length) break;
      frames.push({ type: this.pending[offset] ?? 0, payload: this.pending.subarray(offset + HEADER, offset + HEADER + length) });
      offset += HEADER + length;
    }
    this.pending = this.pending.subarray(offset);
    return frames;
  }
}

function clamp16(n: number): number {
  return Math.max(0, Math.min(0xffff, Math.trunc(n)));
}

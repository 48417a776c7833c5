import type { Duplex } from 'node:stream';
import { SocketLikeDuplex } from '../util/socket-like-duplex.js';
import type { ExecProcess, SandboxRuntime } from './runtime.js';

/** A TCP relay from stdin/stdout to 127.0.0.1:$1, with whatever the image has: busybox/OpenBSD nc, python3 or bash. */
const PY_RELAY = [
  'import os,socket,sys,threading',
  's=socket.create_connection(("127.0.0.1",int(sys.argv[1])))',
  'def up():',
  ' while True:',
  '  d=os.read(0,65536)',
  '  if not d:',
  '   s.shutdown(socket.SHUT_WR);return',
  '  s.sendall(d)',
  'threading.Thread(target=up,daemon=True).start()',
  'while True:',
  ' d=s.recv(65536)',
  ' if not d: break',
  ' os.write(1,d)',
].join('\n');
const RELAY_SCRIPT = [
  'if command -v nc >/dev/null 2>&1; then exec nc 127.0.0.1 "$1"; fi',
  `if command -v python3 >/dev/null 2>&1; then exec python3 -c '${PY_RELAY}' "$1"; fi`,
  `if command -v bash >/dev/null 2>&1; then exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 || exit 1; cat <&3 & cat >&3; wait' "$1"; fi`,
  'echo "corral: no nc, python3 or bash in this sandbox to relay the connection" >&2; exit 127',
].join('\n');

/**
 * A connection to a sandbox port carried over one exec'd relay process: writes go to its stdin,
 * its stdout is what the port sends. It behaves like a socket for `http.request` and `pipe`.
 */
class ExecRelayStream extends SocketLikeDuplex {
  private received = 0;
  private stderr = '';

  constructor(private readonly proc: ExecProcess) {
    super({ allowHalfOpen: true });
    proc.stdout.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      if (!this.push(chunk)) proc.stdout.pause();
    });
    proc.stdout.on('end', () => this.push(null));
    proc.stdout.on('error', (error) => this.destroy(error));
    proc.stderr.on('data', (chunk: Buffer) => {
      if (this.stderr.length < 2048) this.stderr += chunk.toString('utf8');
    });
    proc.stdin?.on('error', () => undefined);
    proc.wait().then(
      ({ exitCode }) => {
        if (exitCode !== 0 && this.received === 0 && !this.destroyed) {
          this.destroy(new Error(`connection refused (${this.stderr.trim() || `relay exit ${exitCode}`})`));
        }
      },
      (error: unknown) => this.destroy(error instanceof Error ? error : new Error(String(error))),
    );
  }

  override _read(): void {
    this.proc.stdout.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const stdin = this.proc.stdin;
    if (!stdin || stdin.destroyed) return callback(new Error('relay is gone'));
    stdin.write(chunk, (error) => callback(error ?? null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.proc.stdin?.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.proc.kill('SIGKILL').catch(() => undefined);
    callback(error);
  }

}

/** Opens a relay inside the sandbox to its own 127.0.0.1:`port`. Works on every driver and with no network. */
export async function dialViaExec(runtime: Pick<SandboxRuntime, 'exec'>, runtimeId: string, port: number): Promise<Duplex> {
  const proc = await runtime.exec(runtimeId, { argv: ['/bin/sh', '-c', RELAY_SCRIPT, 'corral-relay', String(port)], stdin: true });
  return new ExecRelayStream(proc);
}

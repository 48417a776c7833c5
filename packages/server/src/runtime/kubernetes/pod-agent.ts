import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { AgentExecProcess } from '../agent-exec-process.js';
import { Frame, FrameReader, NONCE_BYTES, authFrame, execFrame } from '../agent-protocol.js';
import { RuntimeError } from '../runtime.js';
import type { ExecProcess, ExecRequest } from '../runtime.js';
import { EXEC_MARKER_ENV } from './kubernetes-exec.js';

export { AGENT_PORT, AGENT_SECRET_ENV } from './pod-spec.js';

/** Where a sandbox's agent listens and the secret its connections must prove. */
export interface PodAgentAddress {
  host: string;
  port: number;
  secret: string;
}

/**
 * Opens an authenticated connection to a sandbox's agent: TCP to the Pod's address, the agent's
 * nonce (`N`) read, the HMAC answer (`A`) sent; the socket is returned paused. Rejects with
 * {@link AgentUnreachable} carrying the socket error's code (ETIMEDOUT when the connection or the
 * nonce did not arrive within `timeoutMs`).
 */
export function connectPodAgent(address: PodAgentAddress, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address.host, port: address.port, noDelay: true });
    const reader = new FrameReader();
    const fail = (code: string, message: string): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new AgentUnreachable(code, `the sandbox's agent at ${address.host}:${address.port}: ${message}`));
    };
    const timer = setTimeout(() => fail('ETIMEDOUT', `no handshake within ${timeoutMs} ms`), timeoutMs);
    socket.once('error', (error: NodeJS.ErrnoException) => fail(error.code ?? 'ECONNRESET', error.message));
    socket.once('close', () => fail('ECONNRESET', 'closed before its handshake'));
    const onData = (chunk: Buffer): void => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (error) {
        fail('EPROTO', (error as Error).message);
        return;
      }
      const first = frames[0];
      if (!first) return;
      if (first.type !== Frame.nonce || first.payload.length !== NONCE_BYTES || frames.length > 1) {
        fail('EPROTO', 'no nonce first');
        return;
      }
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      socket.pause();
      socket.write(authFrame(address.secret, first.payload));
      resolve(socket);
    };
    socket.on('data', onData);
  });
}

/** The agent of a sandbox could not be reached or did not complete its handshake; `code` says how. */
export class AgentUnreachable extends RuntimeError {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super('RUNTIME_ERROR', message);
  }
}

/**
 * Starts `request` on an authenticated agent connection: the process gets the container's
 * environment (the agent's, without its secret) overlaid with the request's env and an exec
 * marker (so SIGKILL reaches children that left the process group); a user other than root is
 * resolved by the agent from the sandbox's own /etc/passwd and /etc/group.
 */
export function startPodAgentExec(socket: Socket, request: ExecRequest): ExecProcess {
  const env = new Map<string, string>();
  if (request.tty && !request.env?.TERM) env.set('TERM', 'xterm');
  for (const [k, v] of Object.entries(request.env ?? {})) env.set(k, v);
  env.set(EXEC_MARKER_ENV, randomUUID());
  const user = request.user;
  const root = user === undefined || user === '' || user === 'root' || user === '0';
  let start: Buffer;
  try {
    start = execFrame({
      argv: request.argv,
      env: [...env].map(([k, v]) => `${k}=${v}`),
      cwd: request.cwd ?? '',
      uid: 0,
      gid: 0,
      groups: [],
      tty: request.tty,
      stdin: request.stdin === true || request.tty !== undefined,
      inheritEnv: true,
      ...(root ? {} : { user }),
    });
  } catch (error) {
    socket.destroy();
    throw error;
  }
  const proc = new AgentExecProcess(socket, request);
  socket.write(start);
  socket.resume();
  return proc;
}

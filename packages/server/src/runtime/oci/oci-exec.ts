import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { RuntimeError } from '../runtime.js';
import type { ExecProcess, ExecRequest } from '../runtime.js';
import { connectAgent, execFrame } from '../agent-protocol.js';
import { AgentExecProcess } from '../agent-exec-process.js';

/** Environment variable marking every process an exec starts, so the agent's SIGKILL finds the whole tree. */
export const EXEC_MARKER_ENV = 'CORRAL_EXEC_ID';

/** What an exec needs to know about its sandbox. */
export interface ExecTarget {
  /** The Unix socket the sandbox's agent (its PID 1) accepts exec sessions on. */
  socketPath: string;
  /** The sandbox's environment (image env merged with the spec env). */
  env: string[];
  workingDir: string;
}

/** Whether `user` means root, which needs no lookup (uid 0, gid 0, HOME /root). */
function isRoot(user: string | undefined): boolean {
  return user === undefined || user === '' || user === 'root' || user === '0';
}

/**
 * Starts `request` through the sandbox's agent: one connection per process, which carries its
 * stdin, stdout, stderr, signals, PTY size and exit status. The process is forked by the agent
 * inside the sandbox, so it has the sandbox's namespaces, cgroup, capabilities and seccomp filter.
 * A `user` other than root is resolved by the agent from the sandbox's own /etc/passwd and
 * /etc/group: the server never opens files inside a sandbox.
 */
export async function startOciExec(target: ExecTarget, request: ExecRequest): Promise<ExecProcess> {
  const execId = randomUUID();
  const root = isRoot(request.user);
  const env = new Map<string, string>();
  for (const entry of target.env) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  // For other users the agent adds HOME from /etc/passwd when the environment has none.
  if (root && !env.has('HOME')) env.set('HOME', '/root');
  if (request.tty && !env.has('TERM')) env.set('TERM', 'xterm');
  for (const [k, v] of Object.entries(request.env ?? {})) env.set(k, v);
  env.set(EXEC_MARKER_ENV, execId);
  const start = execFrame({
    argv: request.argv,
    env: [...env].map(([k, v]) => `${k}=${v}`),
    cwd: request.cwd ?? (target.workingDir || '/'),
    uid: 0,
    gid: 0,
    groups: [],
    tty: request.tty,
    stdin: request.stdin === true || request.tty !== undefined,
    ...(root ? {} : { user: request.user }),
  });
  const socket = await connect(target.socketPath);
  socket.write(start);
  return new AgentExecProcess(socket, request);
}

function connect(path: string): Promise<Socket> {
  return connectAgent(path).catch((error: NodeJS.ErrnoException) => {
    const gone = error.code === 'ENOENT' || error.code === 'ECONNREFUSED';
    throw new RuntimeError(gone ? 'NOT_FOUND' : 'RUNTIME_ERROR', `the sandbox's agent is not reachable at ${path}: ${error.message}`, { cause: error });
  });
}

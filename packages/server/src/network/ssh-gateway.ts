import type { FastifyBaseLogger } from 'fastify';
import ssh2, { type AuthContext, type Connection, type PseudoTtyInfo, type ServerChannel, type Session } from 'ssh2';
import type { CorralConfig } from '../config.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { ExecProcess } from '../runtime/runtime.js';
import type { SandboxAccess, SandboxHandle } from '../services/sandbox-access.js';
import type { SshSessionRecords } from './network-deps.js';
import type { SshSessionRecord } from '../records/network-records.js';
import { serveSftp } from './sftp-session.js';
import { loadOrCreateHostKey } from './ssh-host-key.js';

const { Server, utils } = ssh2;

/** Starts the user's login shell: bash when the image has it, else sh. */
const LOGIN_SHELL = 'cd ~ 2>/dev/null || cd /; if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l';

/** What the SSH server needs. */
export interface SshGatewayDeps {
  config: CorralConfig;
  store: SshSessionRecords;
  /** Resolves a session's sandbox, checks the key it was opened with still grants access, records activity. */
  sandboxAccess: SandboxAccess;
  log: FastifyBaseLogger;
}

/**
 * Corral's own SSH server (ssh2): the user name is the SSH session id, and only keys authorised
 * for that session through the gateway's `authorize` are accepted. A shell, a command or SFTP
 * runs in the session's sandbox through the runtime's exec, so images need no sshd.
 */
export class SshGateway {
  private server: InstanceType<typeof Server> | null = null;
  private listening: Promise<number> | null = null;
  /** Open connections per SSH session id. */
  private readonly connections = new Map<string, Set<Connection>>();

  constructor(private readonly deps: SshGatewayDeps) {}

  /** Starts listening on the configured SSH port if not yet; resolves with the port. */
  ensureListening(): Promise<number> {
    this.listening ??= new Promise<number>((resolve, reject) => {
      const server = new Server({ hostKeys: [loadOrCreateHostKey(this.deps.config.dataDir)] }, (client) => this.onClient(client));
      this.server = server;
      server.once('error', (error: Error) => {
        this.listening = null;
        this.server = null;
        reject(error);
      });
      server.listen(this.deps.config.sshPort, this.deps.config.host, () => {
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : this.deps.config.sshPort);
      });
    });
    return this.listening;
  }

  /** The port, once listening. */
  async port(): Promise<number | null> {
    return this.listening ? this.listening.catch(() => null) : null;
  }

  /**
   * Admits a public key for a session of this sandbox until the session ends or `ttlSeconds`
   * pass, whichever is first. Throws a GatewayError (`bad_request`, `ssh_session_not_found`) for the gateway to answer with.
   */
  async authorize(sandboxId: string, body: unknown): Promise<{ success: true; session_id: string; expires_at: string; message: string }> {
    if (typeof body !== 'object' || body === null) throw new GatewayError('bad_request', 'Send a JSON body {session_id, public_key, ttl_seconds}');
    const { session_id: sessionId, public_key: publicKey, ttl_seconds: ttl } = body as Record<string, unknown>;
    if (typeof sessionId !== 'string' || sessionId === '') throw new GatewayError('bad_request', 'session_id must be a non-empty string');
    if (typeof publicKey !== 'string' || publicKey.length > 16_384) throw new GatewayError('bad_request', 'public_key must be an OpenSSH public key line');
    if (ttl !== undefined && ttl !== null && (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > 86_400)) {
      throw new GatewayError('bad_request', 'ttl_seconds must be an integer from 1 to 86400');
    }
    const parsed = utils.parseKey(publicKey.trim());
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (!key || key instanceof Error || key.isPrivateKey()) throw new GatewayError('bad_request', 'public_key is not an OpenSSH public key');
    const session = await this.deps.store.getSshSession(sessionId);
    const now = Date.now();
    if (!session || session.sandboxId !== sandboxId || Date.parse(session.expiresAt) <= now) {
      throw new GatewayError('ssh_session_not_found', `No active SSH session ${sessionId} on this sandbox`);
    }
    const until = Math.min(Date.parse(session.expiresAt), now + (typeof ttl === 'number' ? ttl : session.ttlSeconds) * 1000);
    const expiresAt = new Date(until).toISOString();
    const line = `${key.type} ${key.getPublicSSH().toString('base64')}`;
    await this.deps.store.upsertSshKey({ sessionId, publicKey: line, expiresAt });
    return { success: true, session_id: sessionId, expires_at: expiresAt, message: 'Public key authorised for the SSH session' };
  }

  /** Closes every connection of a session (deleted or expired). */
  closeSession(sessionId: string): void {
    for (const client of this.connections.get(sessionId) ?? []) client.end();
    this.connections.delete(sessionId);
  }

  /**
   * Closes the connections of sessions that have ended or whose access was taken away (the key
   * they were opened with is revoked, its user gone, or no longer allowed on the sandbox), and
   * deletes those sessions.
   */
  async revalidate(): Promise<void> {
    for (const sessionId of [...this.connections.keys()]) {
      const session = await this.deps.store.getSshSession(sessionId);
      if (session && (await this.sessionAllowed(session))) continue;
      if (session) await this.deps.store.deleteSshSession(sessionId);
      this.closeSession(sessionId);
    }
  }

  /** Whether a session's key still grants access to its sandbox (sessions stored without a key: the sandbox's owner still exists). */
  private async sessionAllowed(session: SshSessionRecord): Promise<boolean> {
    return this.deps.sandboxAccess.mayUse(session.apiKeyId, session.sandboxId);
  }

  /** Stops the server and closes every connection. */
  async close(): Promise<void> {
    for (const id of [...this.connections.keys()]) this.closeSession(id);
    const server = this.server;
    this.server = null;
    this.listening = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async checkKey(ctx: AuthContext): Promise<boolean> {
    if (ctx.method !== 'publickey') return false;
    const session = await this.deps.store.getSshSession(ctx.username);
    if (!session || Date.parse(session.expiresAt) <= Date.now()) return false;
    if (!(await this.sessionAllowed(session))) return false;
    const keys = await this.deps.store.listSshKeys(session.id, new Date().toISOString());
    for (const stored of keys) {
      const parsed = utils.parseKey(stored.publicKey);
      const key = Array.isArray(parsed) ? parsed[0] : parsed;
      if (!key || key instanceof Error) continue;
      if (!ctx.key.data.equals(key.getPublicSSH())) continue;
      if (!ctx.signature || !ctx.blob) return true;
      return key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true;
    }
    return false;
  }

  private onClient(client: Connection): void {
    let sessionId: string | null = null;
    const processes = new Set<ExecProcess>();
    client.on('error', () => undefined);
    client.on('authentication', (ctx) => {
      this.checkKey(ctx).then(
        (ok) => {
          if (!ok) return ctx.reject(['publickey']);
          sessionId = ctx.username;
          ctx.accept();
        },
        (error: unknown) => {
          this.deps.log.warn({ err: error }, 'ssh: authentication check failed');
          ctx.reject(['publickey']);
        },
      );
    });
    client.on('ready', () => {
      const id = sessionId as string;
      let set = this.connections.get(id);
      if (!set) {
        set = new Set();
        this.connections.set(id, set);
      }
      set.add(client);
      void this.deps.store.getSshSession(id).then((session) => {
        if (!session) return client.end();
        const timer = setTimeout(() => client.end(), Math.max(0, Date.parse(session.expiresAt) - Date.now()));
        timer.unref();
        client.once('close', () => clearTimeout(timer));
      });
      client.on('session', (accept) => this.onSession(id, accept(), processes));
    });
    client.on('close', () => {
      if (sessionId) this.connections.get(sessionId)?.delete(client);
      for (const proc of processes) proc.kill('SIGKILL').catch(() => undefined);
    });
  }

  /** The running sandbox of a session, or a message why there is none. */
  private async target(sessionId: string): Promise<SandboxHandle | string> {
    const session = await this.deps.store.getSshSession(sessionId);
    if (!session) return 'This SSH session has ended';
    const state = await this.deps.sandboxAccess.open(session.sandboxId);
    if (state.kind === 'running') return state.handle;
    if (state.kind === 'no-runtime') return 'This server has no runtime driver';
    return `Sandbox ${session.sandboxId} is not running`;
  }

  private onSession(sessionId: string, session: Session, processes: Set<ExecProcess>): void {
    let pty: PseudoTtyInfo | null = null;
    let current: ExecProcess | null = null;
    const env: Record<string, string> = {};
    session.on('pty', (accept, _reject, info) => {
      pty = info;
      accept?.();
    });
    session.on('window-change', (accept, _reject, info) => {
      if (pty) pty = { ...pty, rows: info.rows, cols: info.cols };
      current?.resize(info.rows, info.cols).catch(() => undefined);
      accept?.();
    });
    session.on('env', (accept, _reject, info) => {
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(info.key) && Object.keys(env).length < 64) env[info.key] = info.val;
      accept?.();
    });
    const run = (channel: ServerChannel, argv: string[]): void => {
      void this.target(sessionId).then(async (target) => {
        if (typeof target === 'string') {
          channel.stderr.write(`corral: ${target}\r\n`);
          channel.exit(255);
          channel.end();
          return;
        }
        const tty = pty ? { rows: pty.rows || 24, cols: pty.cols || 80 } : undefined;
        let proc: ExecProcess;
        try {
          proc = await target.runtime.exec(target.runtimeId, {
            argv,
            stdin: true,
            ...(tty ? { tty } : {}),
            env: { ...env, ...(pty ? { TERM: pty.term || 'xterm-256color' } : {}) },
          });
        } catch (error) {
          channel.stderr.write(`corral: cannot start the process: ${error instanceof Error ? error.message : String(error)}\r\n`);
          channel.exit(255);
          channel.end();
          return;
        }
        current = proc;
        processes.add(proc);
        const stdin = proc.stdin;
        stdin?.on('error', () => undefined);
        if (stdin) channel.pipe(stdin);
        proc.stdout.pipe(channel, { end: false });
        proc.stderr.pipe(channel.stderr, { end: false });
        channel.on('close', () => {
          if (processes.has(proc)) proc.kill('SIGKILL').catch(() => undefined);
        });
        const keepAlive = setInterval(() => this.deps.sandboxAccess.touch(target.sandboxId), 30_000);
        keepAlive.unref();
        let exitCode = 255;
        try {
          exitCode = (await proc.wait()).exitCode;
        } catch {
          exitCode = 255;
        }
        clearInterval(keepAlive);
        processes.delete(proc);
        if (current === proc) current = null;
        channel.exit(exitCode);
        channel.end();
      });
    };
    session.on('shell', (accept) => run(accept(), ['/bin/sh', '-c', LOGIN_SHELL]));
    session.on('exec', (accept, _reject, info) => run(accept(), ['/bin/sh', '-c', info.command]));
    session.on('sftp', (accept) => {
      // Accept at once: the client's SFTP INIT follows immediately and must find the channel ready.
      const sftp = accept();
      serveSftp(sftp, this.target(sessionId), this.deps.log);
    });
  }
}

import { randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { type BackgroundJob, type BackgroundJobStatus, getBackgroundJob, startBackgroundJob } from './background-jobs.js';
import type { CorralClient } from './client.js';
import { CommandTimeoutError, ConflictError, ConnectionError, CorralError, SandboxNotRunningError, TimeoutError, notRunningKind } from './errors.js';
import type { EgressLogEntry, EgressLogOptions, EgressPolicyChange, EgressPolicyStatus } from './egress.js';
import type { EventsOptions, FollowEventsOptions, SandboxEvent, SandboxStats } from './events.js';
import { type ExecSession, type ExecStreamOptions, openExecStream } from './exec-stream.js';
import type { CommandResult, ExecOptions, ProgressCallback, ReadFileResult, UploadSource } from './gateway-client.js';
import type { CreateSandboxRequest, CreateSshSessionResponse, ExposePortRequest, ExposePortResponse, GetSandboxResponse, ListExposedPortsResponse, UnexposePortResponse } from './generated/api.js';
import { connectionError, parseJson } from './http.js';
import { type CheckpointInfo, type WaitForCheckpointOptions, waitForCheckpoint } from './checkpoints.js';
import { sleep } from './retry.js';

/** A sandbox as the server describes it (camelCase, like Prime's `SandboxResponse`). */
export type SandboxInfo = GetSandboxResponse;

/** Options of {@link Sandbox.create}, in camelCase; see the server's `CreateSandboxRequest` for limits. */
export interface CreateSandboxOptions {
  /** Docker image, e.g. `python:3.11-slim`. Required unless `checkpointId` is given (a restore runs the checkpoint's image). */
  image?: string;
  /**
   * Restore: start from this DURABLE checkpoint (its filesystem, image and disk size). Leave
   * `image` and `diskSizeGb` out (the server refuses different ones with a 422).
   */
  checkpointId?: string;
  /** Default: `<image name>-<4 hex>`. */
  name?: string;
  /** Shell command that keeps the sandbox alive. Default: `tail -f /dev/null`. */
  startCommand?: string | null;
  cpuCores?: number;
  memoryGb?: number;
  diskSizeGb?: number;
  gpuCount?: number;
  gpuType?: CreateSandboxRequest['gpu_type'];
  /** Legacy switch: `false` is `networkAllowlist: []`. */
  networkAccess?: boolean;
  /**
   * Only these domains (`*.` leftmost wildcards), IPs and CIDRs are reachable; `[]` is no network at
   * all. At most 256 entries; exclusive with `networkDenylist`.
   */
  networkAllowlist?: string[] | null;
  /** Everything but these domains, IPs and CIDRs is reachable. */
  networkDenylist?: string[] | null;
  /** Lifetime from RUNNING, minutes (1..1440, -1 = none). Default 60. */
  timeoutMinutes?: number;
  idleTimeoutMinutes?: number | null;
  env?: Record<string, string>;
  secrets?: Record<string, string>;
  labels?: string[];
  teamId?: string;
  region?: string;
  advancedConfigs?: Record<string, unknown>;
  registryCredentialsId?: string;
  /** Makes create safe to retry: the server returns the same sandbox for the same key. Default: a fresh UUID per `create` call. */
  idempotencyKey?: string;
  /**
   * A create still waiting for capacity (PENDING in the server's admission queue) after this many
   * seconds ends in ERROR (`ADMISSION_TIMEOUT`). Default: it waits as long as it takes.
   */
  admissionTimeoutSeconds?: number;
  /**
   * Longest time the server may hold its answer while the sandbox starts, ms; 0 answers at once
   * (PENDING). Default: the server's `CORRAL_CREATE_WAIT_MS` (3 s).
   */
  holdMs?: number;
  signal?: AbortSignal;
}

/** Options of {@link Sandbox.fork}: each fork's create fields (its image and disk come from the checkpoint). */
export type ForkOptions = Omit<CreateSandboxOptions, 'checkpointId' | 'signal' | 'holdMs'>;

/** Options of {@link Sandbox.waitUntilRunning}. */
export interface WaitOptions {
  /** Total budget, ms. Default 120 000. */
  timeoutMs?: number;
  /** First delay between polls, ms; grows ×1.5 up to `maxPollIntervalMs`, ±25 % jitter. Default 100. */
  pollIntervalMs?: number;
  /** Longest delay between polls, ms. Default 1000. */
  maxPollIntervalMs?: number;
  /** After RUNNING, check that commands run (`echo 'sandbox ready'`). Default true. */
  probe?: boolean;
}

/** Options of {@link Sandbox.expose}. */
export interface ExposeOptions {
  /** A name for the exposure. */
  name?: string;
  /** `HTTP` (default): served at `url`; `TCP`: a raw port at `external_endpoint`. */
  protocol?: 'HTTP' | 'TCP';
  /** `token` (HTTP only, Corral only): requests must carry the `access_token` returned once. */
  auth?: ExposePortRequest['auth'];
}

/** One exposed port, as {@link Sandbox.listPorts} returns it. */
export type ExposedPort = ListExposedPortsResponse['exposures'][number];

/**
 * An SSH session on a sandbox ({@link Sandbox.createSshSession}): the server's answer plus helpers.
 * Connect with `ssh -i <key> -p <port> <session_id>@<host>` after {@link SshSession.authorize}.
 */
export interface SshSession extends CreateSshSessionResponse {
  /** Admits an OpenSSH public key (`ssh-ed25519 AAAA…`) for this session only, through the gateway. */
  authorize(publicKey: string, options?: { ttlSeconds?: number }): Promise<void>;
  /** Deletes the session: its keys go and its connections are closed. */
  close(): Promise<void>;
}

const TERMINAL = new Set(['ERROR', 'TERMINATED', 'TIMEOUT']);

/** Maps camelCase options to the server's request body. */
export function createRequest(options: CreateSandboxOptions): CreateSandboxRequest {
  if (options.image === undefined && options.checkpointId === undefined) throw new TypeError('createRequest: give an image, or a checkpointId to restore');
  const base = options.image ?? 'restored';
  const slug = (base.split('/').pop() ?? 'sandbox').split(/[:@]/)[0]?.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 80) || 'sandbox';
  const body: CreateSandboxRequest = {
    name: options.name ?? `${slug}-${randomBytes(2).toString('hex')}`,
    start_command: options.startCommand === undefined ? 'tail -f /dev/null' : options.startCommand,
    idempotency_key: options.idempotencyKey ?? randomUUID().replace(/-/g, ''),
  };
  if (options.image !== undefined) body.docker_image = options.image;
  if (options.checkpointId !== undefined) body.checkpoint_id = options.checkpointId;
  if (options.cpuCores !== undefined) body.cpu_cores = options.cpuCores;
  if (options.memoryGb !== undefined) body.memory_gb = options.memoryGb;
  if (options.diskSizeGb !== undefined) body.disk_size_gb = options.diskSizeGb;
  if (options.gpuCount !== undefined) body.gpu_count = options.gpuCount;
  if (options.gpuType !== undefined) body.gpu_type = options.gpuType;
  if (options.networkAccess !== undefined) body.network_access = options.networkAccess;
  if (options.networkAllowlist !== undefined) body.network_allowlist = options.networkAllowlist;
  if (options.networkDenylist !== undefined) body.network_denylist = options.networkDenylist;
  if (options.timeoutMinutes !== undefined) body.timeout_minutes = options.timeoutMinutes;
  if (options.idleTimeoutMinutes !== undefined) body.idle_timeout_minutes = options.idleTimeoutMinutes;
  if (options.env !== undefined) body.environment_vars = options.env;
  if (options.secrets !== undefined) body.secrets = options.secrets;
  if (options.labels !== undefined) body.labels = options.labels;
  if (options.teamId !== undefined) body.team_id = options.teamId;
  if (options.region !== undefined) body.region = options.region;
  if (options.advancedConfigs !== undefined) body.advanced_configs = options.advancedConfigs;
  if (options.registryCredentialsId !== undefined) body.registry_credentials_id = options.registryCredentialsId;
  if (options.admissionTimeoutSeconds !== undefined) body.admission_timeout_seconds = options.admissionTimeoutSeconds;
  return body;
}

/**
 * A handle on one sandbox: lifecycle, commands, files and background jobs.
 *
 * @example
 * ```ts
 * const sandbox = await Sandbox.create(client, { image: 'python:3.11-slim', labels: ['demo'] });
 * await sandbox.waitUntilRunning();
 * const { stdout, exitCode } = await sandbox.exec('python3 -c "print(6 * 7)"');
 * await sandbox.delete();
 * ```
 */
export class Sandbox {
  private constructor(
    readonly client: CorralClient,
    readonly id: string,
    /** The last description fetched from the server. */
    public info: SandboxInfo,
    /** `create` answered RUNNING (the server held its answer until the sandbox started). */
    private readonly createdRunning = false,
  ) {}

  /**
   * Creates a sandbox. Sends an idempotency key (a fresh UUID unless given) that stays the same
   * across the client's own retries, so a lost answer never makes a second sandbox.
   */
  static async create(client: CorralClient, options: CreateSandboxOptions): Promise<Sandbox> {
    const info = await client.sandboxes.create(createRequest(options), options.signal, options.holdMs);
    return new Sandbox(client, info.id, info, info.status === 'RUNNING');
  }

  /**
   * `count` new sandboxes restored from a DURABLE checkpoint (all or none: when one is refused,
   * for example by a quota, the others are deleted). `options` are the create fields of each.
   */
  static async fork(client: CorralClient, checkpointId: string, count: number, options: ForkOptions = {}): Promise<Sandbox[]> {
    const { checkpoint_id: _restored, ...body } = createRequest({ ...options, checkpointId });
    const { sandboxes } = await client.sandboxes.forkCheckpoint(checkpointId, { ...body, count });
    return sandboxes.map((info) => new Sandbox(client, info.id, info, info.status === 'RUNNING'));
  }

  /** A handle on an existing sandbox (reads it once; throws {@link NotFoundError} when unknown). */
  static async connect(client: CorralClient, id: string): Promise<Sandbox> {
    return new Sandbox(client, id, await client.sandboxes.get(id));
  }

  /** The egress policy, its generation and whether the runtime enforces it yet (`applied`). */
  getEgressPolicy(): Promise<EgressPolicyStatus> {
    return this.client.getEgressPolicy(this.id);
  }

  /**
   * Replaces the egress policy (`{ allow: [...] }` or `{ deny: [...] }`; `{ deny: [] }` is open).
   * The sandbox follows it within a second; `applied` in the answer says whether it already does.
   */
  setEgressPolicy(change: EgressPolicyChange): Promise<EgressPolicyStatus> {
    return this.client.setEgressPolicy(this.id, change);
  }

  /** Recent DNS answers and connection attempts, oldest first. */
  egressLog(options: EgressLogOptions = {}): Promise<EgressLogEntry[]> {
    return this.client.egressLog(this.id, options);
  }

  /** A page of this sandbox's events, oldest first (see `CorralClient.events`). */
  events(options: EventsOptions = {}): Promise<{ events: SandboxEvent[]; hasMore: boolean }> {
    return this.client.events(this.id, options);
  }

  /** This sandbox's resource usage (see `CorralClient.stats`). */
  stats(): Promise<SandboxStats> {
    return this.client.stats(this.id);
  }

  /** This sandbox's events, then new ones as they happen, until it has ended (see `CorralClient.followEvents`). */
  followEvents(options: FollowEventsOptions = {}): AsyncGenerator<SandboxEvent> {
    return this.client.followEvents(this.id, options);
  }

  /** Re-reads the sandbox. */
  async refresh(): Promise<SandboxInfo> {
    this.info = await this.client.sandboxes.get(this.id);
    return this.info;
  }

  /**
   * Waits until the sandbox is RUNNING and answers commands. Status polls go through the
   * client's coalescer, so many concurrent waits share `status:batchGet` requests. Throws
   * {@link SandboxNotRunningError} (with `kind`) if it ends, {@link TimeoutError} if the budget runs out.
   * When `create` already answered RUNNING (the server holds the create while the sandbox starts)
   * it asks for no status and goes straight to the probe; otherwise it polls 100 ms apart at first,
   * growing to 1 s.
   */
  async waitUntilRunning(options: WaitOptions = {}): Promise<this> {
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    let delay = options.pollIntervalMs ?? 100;
    const maxDelay = options.maxPollIntervalMs ?? 1_000;
    let last = '';
    while (!this.createdRunning) {
      const entry = await this.client.statuses.get(this.id);
      last = entry.status;
      if (entry.status === 'RUNNING') break;
      if (TERMINAL.has(entry.status)) {
        throw new SandboxNotRunningError(this.id, { kind: notRunningKind(entry.status, entry.errorType), status: entry.status, errorType: entry.errorType, errorMessage: entry.errorMessage });
      }
      if (Date.now() > deadline) {
        throw new TimeoutError(`Sandbox ${this.id} is still ${last} after ${options.timeoutMs ?? 120_000} ms. Check \`corral sandbox logs ${this.id}\` and the server's capacity, or wait longer (timeoutMs).`);
      }
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())) * (0.75 + Math.random() * 0.5));
      delay = Math.min(delay * 1.5, maxDelay);
    }
    if (options.probe !== false) await this.probe(deadline);
    return this;
  }

  private async probe(deadline: number): Promise<void> {
    for (;;) {
      try {
        await this.exec("echo 'sandbox ready'", { timeout: 10 });
        return;
      } catch (error) {
        // The probe is an `echo`, safe to send again: a connection cut while it ran (a server or
        // replica restarting) is tried again like the server's own not-ready answers.
        const retryable =
          error instanceof ConflictError ||
          error instanceof CommandTimeoutError ||
          error instanceof ConnectionError ||
          (error instanceof SandboxNotRunningError && error.sandboxStatus === 'RUNNING') ||
          (error instanceof CorralError && error.status >= 500);
        if (!retryable) throw error;
        if (Date.now() > deadline) {
          throw new SandboxNotRunningError(this.id, { kind: 'GATEWAY_REACHABILITY_TIMEOUT', status: 'RUNNING', errorMessage: error.message });
        }
        await sleep(500);
      }
    }
  }

  /**
   * Runs a shell command (`/bin/sh -c`) and returns stdout, stderr and the exit code. A non-zero
   * exit code is a result, not an error.
   *
   * @example
   * ```ts
   * const r = await sandbox.exec('ls /missing', { cwd: '/tmp', timeout: 10 });
   * if (r.exitCode !== 0) console.error(r.stderr);
   * ```
   */
  exec(command: string, options: ExecOptions = {}): Promise<CommandResult> {
    return this.client.gateway.exec(this.id, command, options);
  }

  /** Starts a process with live stdin/stdout/stderr over a WebSocket, optionally on a terminal. See {@link ExecSession}. */
  execStream(command: string | string[], options: ExecStreamOptions = {}): Promise<ExecSession> {
    return openExecStream(this.client.gateway, this.id, command, options);
  }

  /** Writes bytes, text or a stream to `path` (absolute; parent directories are created). Streams are not buffered. */
  uploadFile(path: string, data: UploadSource, options: { onProgress?: ProgressCallback } = {}): Promise<{ path: string; size: number }> {
    return this.client.gateway.upload(this.id, path, data, options);
  }

  /** Same as {@link uploadFile}. */
  writeFile(path: string, data: UploadSource, options: { onProgress?: ProgressCallback } = {}): Promise<{ path: string; size: number }> {
    return this.uploadFile(path, data, options);
  }

  /** Writes UTF-8 text to `path`. */
  async writeText(path: string, text: string): Promise<void> {
    await this.uploadFile(path, text);
  }

  /** The file's bytes as a stream (any size); `.size` is the length when the server sent it. */
  downloadFile(path: string, options: { onProgress?: ProgressCallback } = {}): Promise<Readable & { size: number | undefined }> {
    return this.client.gateway.download(this.id, path, options);
  }

  /** The whole file as UTF-8 text (downloaded, so not limited to 10 MiB). */
  async readText(path: string): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.downloadFile(path)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  /** A window of a text file: `offset` (negative = from the end) and `length`, at most 10 MiB. */
  readFile(path: string, options: { offset?: number; length?: number } = {}): Promise<ReadFileResult> {
    return this.client.gateway.readFile(this.id, path, options);
  }

  /**
   * Starts a command detached (Prime's background-job protocol) and returns at once.
   *
   * @example
   * ```ts
   * const job = await sandbox.startBackgroundJob('sleep 1; echo done');
   * let status = await sandbox.getBackgroundJob(job);
   * while (!status.completed) status = await sandbox.getBackgroundJob(job);
   * ```
   */
  startBackgroundJob(command: string, options: { cwd?: string; env?: Record<string, string>; user?: string } = {}): Promise<BackgroundJob> {
    return startBackgroundJob(this.client.gateway, this.id, command, options);
  }

  /** The job's state; output and exit code once it completed. */
  getBackgroundJob(job: BackgroundJob): Promise<BackgroundJobStatus> {
    return getBackgroundJob(this.client.gateway, job);
  }

  /**
   * Starts a background job and polls it until it completes; {@link CommandTimeoutError} after
   * `timeout` seconds. Polls 50 ms after the start, then ×1.5 up to `pollIntervalMs` (default 1000),
   * so a short job is seen done within tens of ms.
   */
  async runBackgroundJob(command: string, options: { cwd?: string; env?: Record<string, string>; timeout?: number; pollIntervalMs?: number } = {}): Promise<BackgroundJobStatus> {
    const job = await this.startBackgroundJob(command, options);
    const timeout = options.timeout ?? 900;
    const deadline = Date.now() + timeout * 1000;
    const maxDelay = options.pollIntervalMs ?? 1000;
    let delay = Math.min(50, maxDelay);
    for (;;) {
      const status = await this.getBackgroundJob(job);
      if (status.completed) return status;
      if (Date.now() > deadline) throw new CommandTimeoutError(this.id, command, timeout);
      await sleep(delay);
      delay = Math.min(delay * 1.5, maxDelay);
    }
  }

  /**
   * Exposes a port of the sandbox: HTTP at the returned `url`, TCP at `external_endpoint`.
   *
   * @example
   * ```ts
   * const exposure = await sandbox.expose(8000, { name: 'web' });
   * console.log(exposure.url);
   * await sandbox.unexpose(exposure.exposure_id);
   * ```
   */
  expose(port: number, options: ExposeOptions = {}): Promise<ExposePortResponse> {
    return this.client.sandboxes.expose(this.id, {
      port,
      protocol: options.protocol ?? 'HTTP',
      ...(options.name !== undefined ? { name: options.name } : {}),
      ...(options.auth !== undefined ? { auth: options.auth } : {}),
    });
  }

  /** Removes an exposure; its open connections are cut. */
  unexpose(exposureId: string): Promise<UnexposePortResponse> {
    return this.client.sandboxes.unexpose(this.id, exposureId);
  }

  /** This sandbox's exposures. */
  async listPorts(): Promise<ExposedPort[]> {
    return (await this.client.sandboxes.listExposedPorts(this.id)).exposures;
  }

  /**
   * Creates an SSH session (the sandbox must be RUNNING). Authorize a public key with
   * `session.authorize(publicKey)`, connect with `ssh <session_id>@<host> -p <port>`, and
   * `session.close()` when done (it also ends at `expires_at`).
   */
  async createSshSession(options: { ttlSeconds?: number } = {}): Promise<SshSession> {
    const created = await this.client.sandboxes.createSshSession(this.id, options.ttlSeconds !== undefined ? { ttl_seconds: options.ttlSeconds } : {});
    const client = this.client;
    const sandboxId = this.id;
    return {
      ...created,
      async authorize(publicKey: string, authorizeOptions: { ttlSeconds?: number } = {}): Promise<void> {
        const url = `${created.gateway_url.replace(/\/+$/, '')}/${encodeURIComponent(created.user_ns)}/${encodeURIComponent(created.job_id)}/authorize`;
        let response: Response;
        try {
          response = await client.options.fetch(url, {
            method: 'POST',
            headers: { authorization: `Bearer ${created.token}`, 'content-type': 'application/json', 'user-agent': client.options.userAgent },
            body: JSON.stringify({ session_id: created.session_id, public_key: publicKey.trim(), ttl_seconds: authorizeOptions.ttlSeconds ?? created.ttl_seconds }),
          });
        } catch (error) {
          throw connectionError(created.gateway_url, error);
        }
        const text = await response.text();
        if (!response.ok) throw await client.gateway.errorFor(sandboxId, response.status, parseJson(text), `ssh key authorize for session ${created.session_id}`);
      },
      async close(): Promise<void> {
        await client.sandboxes.closeSshSession(sandboxId, created.session_id);
      },
    };
  }

  /**
   * Pauses the sandbox (Corral's extension): every process is frozen, its memory kept, and its
   * `timeoutMinutes` and idle timers stop. Until {@link Sandbox.resume}, exec and file calls fail
   * (the gateway answers 409 `sandbox_not_ready`). Idempotent. Throws `ConflictError` (409) when
   * the sandbox is not RUNNING (`SANDBOX_NOT_RUNNING`) or the server's runtime driver cannot pause
   * (`PAUSE_UNSUPPORTED`).
   */
  async pause(): Promise<SandboxInfo> {
    this.info = await this.client.sandboxes.pause(this.id);
    return this.info;
  }

  /**
   * Takes a checkpoint of this (RUNNING or PAUSED) sandbox: its whole filesystem, and with
   * `memory` its processes too (drivers with memory checkpoints). Returns it PENDING, or with
   * `wait` once it is DURABLE ({@link waitForCheckpoint}: {@link CheckpointFailedError} when it fails).
   */
  async checkpoint(options: { memory?: boolean; wait?: boolean | WaitForCheckpointOptions } = {}): Promise<CheckpointInfo> {
    const started = await this.client.sandboxes.checkpoint(this.id, options.memory !== undefined ? { memory: options.memory } : null);
    if (!options.wait) return started;
    return waitForCheckpoint(this.client, started.id, options.wait === true ? {} : options.wait);
  }

  /** This sandbox's checkpoints, newest first. */
  async listCheckpoints(): Promise<CheckpointInfo[]> {
    return (await this.client.sandboxes.listCheckpoints(this.id)).checkpoints;
  }

  /**
   * Forks this sandbox `count` times (1..64): a checkpoint first (with `memory`, of its processes
   * too), then `count` sandboxes restored from it with this one's settings.
   */
  async fork(count: number, options: { memory?: boolean } = {}): Promise<{ checkpoint: CheckpointInfo; sandboxes: Sandbox[] }> {
    const { checkpoint, sandboxes } = await this.client.sandboxes.fork(this.id, { count, ...(options.memory !== undefined ? { memory: options.memory } : {}) });
    return { checkpoint, sandboxes: sandboxes.map((info) => new Sandbox(this.client, info.id, info, info.status === 'RUNNING')) };
  }

  /** Resumes a paused sandbox: its processes continue where they stopped, its timers with the time they had left. Idempotent. */
  async resume(): Promise<SandboxInfo> {
    this.info = await this.client.sandboxes.resume(this.id);
    return this.info;
  }

  /** The start command's output. */
  async logs(): Promise<string> {
    return (await this.client.sandboxes.logs(this.id)).logs;
  }

  /** Deletes the sandbox (its container is removed). */
  async delete(): Promise<void> {
    await this.client.sandboxes.delete(this.id);
    this.client.gateway.tokens.forget(this.id);
  }
}

import type { SandboxRuntime } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import type { AccessChecker } from './access-checker.js';
import type { ActivityTracker } from './activity-tracker.js';
import type { GatewayTokens } from './gateway-tokens.js';
import { isTerminal, type SandboxRecord, type SandboxStatus } from '../records/sandbox-records.js';

/** What the data plane reads from the store. */
export type SandboxAccessStore = Pick<Store, 'getSandbox' | 'getSandboxes' | 'getUser'>;

/** A running sandbox and the driver that reaches it. */
export interface SandboxHandle {
  sandboxId: string;
  /** The sandbox's owner. */
  userId: string;
  runtimeId: string;
  runtime: SandboxRuntime;
  /** The sandbox's `cpu_cores`: the gateway bounds its concurrent operations by them. */
  cpuCores: number;
}

/** The access a gateway request or session was opened with: the API key behind its token, and its caller. */
export interface SandboxGrant {
  keyId: string;
  callerId: string;
  sandboxId: string;
}

/**
 * Where a sandbox stands for the data plane, checked in this order: `missing` (no row), `ended`
 * (a terminal status), `not-running` (PENDING, PROVISIONING, PAUSED), `no-container` (RUNNING
 * without a runtime id), `no-runtime` (this server has no driver), `running`.
 */
export type SandboxState =
  | { kind: 'missing' }
  | { kind: 'ended'; sandboxId: string; status: SandboxStatus }
  | { kind: 'not-running'; sandboxId: string; status: SandboxStatus }
  | { kind: 'no-container'; sandboxId: string; status: SandboxStatus }
  | { kind: 'no-runtime'; sandboxId: string }
  | { kind: 'running'; handle: SandboxHandle };

/** Why a gateway token does not admit its request, in the order the checks run. */
export type TokenDenial = 'missing-token' | 'invalid-token' | 'other-sandbox' | 'other-namespace' | 'revoked';

/** A gateway token checked against its path: refused, or admitted with the sandbox's state (`missing` before any namespace check). */
export type TokenResolution = { ok: false; denied: TokenDenial } | { ok: true; grant: SandboxGrant; state: SandboxState };

/** How often a long operation marks its sandbox active again. */
const KEEP_ACTIVE_MS = 30_000;

/**
 * The data plane's one way to a sandbox: resolves it for a gateway token, an SSH session's key or
 * an exposure, checks that it runs here, hands back the runtime handle, and records activity (which
 * resets the idle timer). The gateway, SSH, SFTP, exposures and tunnels go through it and reach
 * neither the store nor a driver themselves.
 */
export class SandboxAccess {
  constructor(
    private readonly deps: {
      store: SandboxAccessStore;
      runtime: SandboxRuntime | null;
      tokens: Pick<GatewayTokens, 'verify'>;
      /** Re-checks that the key behind a token or session still grants access. */
      access: Pick<AccessChecker, 'maySee'>;
      activity: Pick<ActivityTracker, 'touch'>;
      /**
       * The deployment (`CORRAL_INSTANCE_ID`): its sandboxes are served here. Its replicas share it,
       * and the runtime (`sharedRuntime`), so every replica serves every sandbox of the deployment.
       */
      instanceId: string;
    },
  ) {}

  /** Where a sandbox stands; records no activity. */
  async state(sandboxId: string): Promise<SandboxState> {
    return this.classify(await this.deps.store.getSandbox(sandboxId));
  }

  /** Where a sandbox stands, marking it active when it runs (a connection or session is being opened to it). */
  async open(sandboxId: string): Promise<SandboxState> {
    const state = await this.state(sandboxId);
    if (state.kind === 'running') this.touch(sandboxId);
    return state;
  }

  /**
   * Checks a gateway token for `/gateway/{userNs}/{jobId}`: it verifies and is unexpired, names
   * this sandbox, `userNs` is the token's user or the sandbox's owner, and the API key it was
   * issued through still grants access (re-checked on use, cached briefly by `AccessChecker`).
   * Records no activity.
   */
  async forGatewayToken(userNs: string, jobId: string, token: string | undefined): Promise<TokenResolution> {
    if (!token) return { ok: false, denied: 'missing-token' };
    const claims = this.deps.tokens.verify(token);
    if (!claims) return { ok: false, denied: 'invalid-token' };
    if (claims.sid !== jobId) return { ok: false, denied: 'other-sandbox' };
    const grant: SandboxGrant = { keyId: claims.kid, callerId: claims.uid, sandboxId: jobId };
    const sandbox = await this.deps.store.getSandbox(jobId);
    if (!sandbox) return { ok: true, grant, state: { kind: 'missing' } };
    if (userNs !== claims.uid && userNs !== sandbox.userId) return { ok: false, denied: 'other-namespace' };
    if (!(await this.deps.access.maySee(claims.kid, sandbox, claims.uid))) return { ok: false, denied: 'revoked' };
    return { ok: true, grant, state: this.classify(sandbox) };
  }

  /**
   * Whether access opened with `keyId` still holds on the sandbox: the key is unrevoked, its user
   * exists (and is `callerId`, when given) and may see the sandbox. Without a key (SSH sessions
   * stored before keys were recorded): the sandbox's owner still exists.
   */
  async mayUse(keyId: string | null, sandboxId: string, callerId?: string): Promise<boolean> {
    const sandbox = await this.deps.store.getSandbox(sandboxId);
    if (!sandbox) return false;
    if (keyId === null) return (await this.deps.store.getUser(sandbox.userId)) !== undefined;
    return this.deps.access.maySee(keyId, sandbox, callerId);
  }

  /** The grants among `grants` that no longer hold (each sandbox is read once). */
  async revokedGrants(grants: readonly SandboxGrant[]): Promise<SandboxGrant[]> {
    const sandboxes = new Map<string, SandboxRecord | undefined>();
    const revoked: SandboxGrant[] = [];
    for (const grant of grants) {
      if (!sandboxes.has(grant.sandboxId)) sandboxes.set(grant.sandboxId, await this.deps.store.getSandbox(grant.sandboxId));
      const sandbox = sandboxes.get(grant.sandboxId);
      if (sandbox && (await this.deps.access.maySee(grant.keyId, sandbox, grant.callerId))) continue;
      revoked.push(grant);
    }
    return revoked;
  }

  /**
   * The sandboxes among `sandboxIds` that have not ended and are run by this deployment (any of its
   * replicas: they share the runtime), or not yet claimed by one.
   */
  async liveHere(sandboxIds: readonly string[]): Promise<Set<string>> {
    const live = new Set<string>();
    for (const sandbox of await this.deps.store.getSandboxes(sandboxIds)) {
      if (isTerminal(sandbox.status)) continue;
      if (sandbox.runtimeOwner !== null && sandbox.runtimeOwner !== this.deps.instanceId) continue;
      live.add(sandbox.id);
    }
    return live;
  }

  /** Marks the sandbox active now (resets its idle timer). */
  touch(sandboxId: string): void {
    this.deps.activity.touch(sandboxId);
  }

  /**
   * Marks the sandbox active now and every 30 s until the returned function is called (which marks
   * it once more), so a long operation keeps the idle timer from firing under it.
   */
  keepActive(sandboxId: string): () => void {
    this.touch(sandboxId);
    const timer = setInterval(() => this.touch(sandboxId), KEEP_ACTIVE_MS);
    timer.unref();
    return () => {
      clearInterval(timer);
      this.touch(sandboxId);
    };
  }

  private classify(sandbox: SandboxRecord | undefined): SandboxState {
    if (!sandbox) return { kind: 'missing' };
    if (isTerminal(sandbox.status)) return { kind: 'ended', sandboxId: sandbox.id, status: sandbox.status };
    if (sandbox.status !== 'RUNNING') return { kind: 'not-running', sandboxId: sandbox.id, status: sandbox.status };
    if (!sandbox.runtimeId) return { kind: 'no-container', sandboxId: sandbox.id, status: sandbox.status };
    if (!this.deps.runtime) return { kind: 'no-runtime', sandboxId: sandbox.id };
    return { kind: 'running', handle: { sandboxId: sandbox.id, userId: sandbox.userId, runtimeId: sandbox.runtimeId, runtime: this.deps.runtime, cpuCores: sandbox.cpuCores } };
  }
}

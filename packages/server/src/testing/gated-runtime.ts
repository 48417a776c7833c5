import type { Duplex, Readable } from 'node:stream';
import {
  type ExecProcess,
  type DiskCapacity,
  type SandboxCapacity,
  type EgressLogEntry,
  type EgressPolicy,
  type RuntimeCapabilities,
  type RuntimeEvent,
  type RuntimeIsolation,
  RuntimeError,
  type RuntimeSandboxState,
  type RuntimeStats,
  type SandboxFileReader,
  type SandboxRuntime,
  type SandboxSpec,
} from '../runtime/runtime.js';

/**
 * A runtime whose `create` finishes only when the test opens the sandbox's gate, so tests can
 * hold a sandbox in PROVISIONING as long as they like. It runs nothing: exec and files throw.
 *
 * Egress: it claims to enforce policies (`egressPolicy: true`) unless built with
 * `{ egress: false }`, records every policy it is given (at create and through
 * `setEgressPolicy`), answers `egressLog` from {@link egressLogs}, and can be made to fail or
 * stall `setEgressPolicy` ({@link failEgress}, {@link egressDelayMs}).
 */
export class GatedRuntime implements SandboxRuntime {
  readonly name = 'gated';
  /** Sandbox ids `create` was called for, in order. */
  readonly created: string[] = [];
  /** The spec `create` was given, by sandbox id. */
  readonly specs = new Map<string, SandboxSpec>();
  /** Every policy `setEgressPolicy` was given, by runtime id, in order. */
  readonly egressPolicies = new Map<string, EgressPolicy[]>();
  /** What `egressLog` answers, by runtime id. */
  readonly egressLogs = new Map<string, EgressLogEntry[]>();
  /** While set, `setEgressPolicy` throws this (a `RuntimeError` kind). */
  failEgress: 'UNSUPPORTED' | 'RUNTIME_ERROR' | null = null;
  /** How long `setEgressPolicy` takes. */
  egressDelayMs = 0;
  /** What `capacity()` reports; undefined (the default): no capacity, creates are admitted unchecked. */
  reportedCapacity: SandboxCapacity | undefined = undefined;
  private readonly enforcesEgress: boolean;

  constructor(options: { /** Whether it claims to enforce egress policies (default true). */ egress?: boolean } = {}) {
    this.enforcesEgress = options.egress ?? true;
  }
  private readonly containers = new Map<string, RuntimeSandboxState>();
  private readonly gates = new Map<string, { open: () => void; opened: Promise<void> }>();
  private readonly startedWaiters: Array<{ id: string; resolve: () => void }> = [];
  private allOpen = false;

  private gate(sandboxId: string): { open: () => void; opened: Promise<void> } {
    let gate = this.gates.get(sandboxId);
    if (!gate) {
      let open = (): void => {};
      const opened = new Promise<void>((resolve) => (open = resolve));
      gate = { open, opened };
      this.gates.set(sandboxId, gate);
      if (this.allOpen) open();
    }
    return gate;
  }

  /** Lets the sandbox's `create` finish (now, or as soon as it is called). */
  open(sandboxId: string): void {
    this.gate(sandboxId).open();
  }

  /** Resolves once `create` has been called for the sandbox. */
  started(sandboxId: string): Promise<void> {
    if (this.created.includes(sandboxId)) return Promise.resolve();
    return new Promise((resolve) => this.startedWaiters.push({ id: sandboxId, resolve }));
  }

  /** The sandbox ids with a container that has not been removed. */
  live(): string[] {
    return [...this.containers.values()].map((c) => c.sandboxId);
  }

  async init(): Promise<void> {}
  capabilities(): RuntimeCapabilities {
    return { gpuCount: 0, gpuTypes: [], egressPolicy: this.enforcesEgress };
  }
  /** Runs nothing, so it isolates nothing: reported as such. */
  isolation(): RuntimeIsolation {
    return { userNamespace: false, seccomp: false, cgroupVersion: 1, cgroupNamespace: false, reason: 'test runtime: runs nothing' };
  }
  /** No disks: nothing to admit against. */
  async diskCapacity(): Promise<DiskCapacity | undefined> {
    return undefined;
  }
  /** {@link reportedCapacity}. */
  async capacity(): Promise<SandboxCapacity | undefined> {
    return this.reportedCapacity;
  }
  async create(spec: SandboxSpec): Promise<{ runtimeId: string }> {
    this.created.push(spec.sandboxId);
    this.specs.set(spec.sandboxId, spec);
    for (const waiter of this.startedWaiters.filter((w) => w.id === spec.sandboxId)) waiter.resolve();
    const runtimeId = `gated-${spec.sandboxId}`;
    this.containers.set(runtimeId, { sandboxId: spec.sandboxId, runtimeId, running: true, exitCode: null, oomKilled: false });
    await this.gate(spec.sandboxId).opened;
    return { runtimeId };
  }
  exec(): Promise<ExecProcess> {
    return Promise.reject(new RuntimeError('UNSUPPORTED', 'the gated test runtime runs nothing'));
  }
  putFile(): Promise<{ size: number }> {
    return Promise.reject(new RuntimeError('UNSUPPORTED', 'the gated test runtime has no files'));
  }
  getFile(): Promise<{ size: number; stream: Readable }> {
    return Promise.reject(new RuntimeError('UNSUPPORTED', 'the gated test runtime has no files'));
  }
  openFileReader(): SandboxFileReader {
    throw new RuntimeError('UNSUPPORTED', 'the gated test runtime has no files');
  }
  dial(): Promise<Duplex> {
    return Promise.reject(new RuntimeError('UNSUPPORTED', 'the gated test runtime runs nothing to connect to'));
  }
  async logs(): Promise<string> {
    return '';
  }
  async stats(): Promise<RuntimeStats> {
    return { memoryBytes: 0, memoryLimitBytes: 0, cpuUsageNanos: 0, pids: 0 };
  }
  async inspect(runtimeId: string): Promise<RuntimeSandboxState | undefined> {
    return this.containers.get(runtimeId);
  }
  async remove(runtimeId: string): Promise<void> {
    this.containers.delete(runtimeId);
  }
  async list(): Promise<RuntimeSandboxState[]> {
    return [...this.containers.values()];
  }
  /** Records the policy (after `egressDelayMs`), or throws `failEgress`; refuses when built without egress. */
  async setEgressPolicy(runtimeId: string, policy: EgressPolicy): Promise<void> {
    if (!this.enforcesEgress) throw new RuntimeError('UNSUPPORTED', `egress policies are not enforced by the gated runtime (sandbox ${runtimeId})`);
    if (this.egressDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.egressDelayMs));
    if (this.failEgress) throw new RuntimeError(this.failEgress, `egress policy refused by the test (sandbox ${runtimeId})`);
    if (!this.containers.has(runtimeId)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`);
    const list = this.egressPolicies.get(runtimeId) ?? [];
    list.push({ allowlist: policy.allowlist === null ? null : [...policy.allowlist], denylist: policy.denylist === null ? null : [...policy.denylist] });
    this.egressPolicies.set(runtimeId, list);
  }

  /** The last `limit` entries of `egressLogs`; refuses when built without egress. */
  async egressLog(runtimeId: string, limit: number): Promise<EgressLogEntry[]> {
    if (!this.enforcesEgress) throw new RuntimeError('UNSUPPORTED', `egress logs are not recorded by the gated runtime (sandbox ${runtimeId})`);
    if (!this.containers.has(runtimeId)) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`);
    return (this.egressLogs.get(runtimeId) ?? []).slice(-limit);
  }

  onEvent(_listener: (event: RuntimeEvent) => void): () => void {
    return () => {};
  }
  /** Opens every gate, now and from now on, so provisioning ends (call it before closing the server). */
  openAll(): void {
    this.allOpen = true;
    for (const gate of this.gates.values()) gate.open();
  }
  async close(): Promise<void> {}
}

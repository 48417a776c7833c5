import type { Readable } from 'node:stream';
import {
  type ExecProcess,
  type DiskCapacity,
  type EgressLogEntry,
  type EgressPolicy,
  type RuntimeCapabilities,
  type RuntimeIsolation,
  RuntimeError,
  type RuntimeSandboxState,
  type RuntimeStats,
  type SandboxRuntime,
  type SandboxSpec,
} from '../runtime/runtime.js';

/**
 * A runtime whose `create` finishes only when the test opens the sandbox's gate, so tests can
 * hold a sandbox in PROVISIONING as long as they like. It runs nothing: exec and files throw.
 */
export class GatedRuntime implements SandboxRuntime {
  readonly name = 'gated';
  /** Sandbox ids `create` was called for, in order. */
  readonly created: string[] = [];
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
    return { gpuCount: 0, gpuTypes: [] };
  }
  /** Runs nothing, so it isolates nothing: reported as such. */
  isolation(): RuntimeIsolation {
    return { userNamespace: false, seccomp: false, cgroupVersion: 1, cgroupNamespace: false, reason: 'test runtime: runs nothing' };
  }
  /** No disks: nothing to admit against. */
  async diskCapacity(): Promise<DiskCapacity | undefined> {
    return undefined;
  }
  async create(spec: SandboxSpec): Promise<{ runtimeId: string }> {
    this.created.push(spec.sandboxId);
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
  /** Not enforced by this driver yet: refused rather than ignored. */
  async setEgressPolicy(runtimeId: string, _policy: EgressPolicy): Promise<void> {
    throw new RuntimeError('UNSUPPORTED', `egress policies are not enforced by this driver yet (sandbox ${runtimeId})`);
  }

  /** Not recorded by this driver yet. */
  async egressLog(runtimeId: string, _limit: number): Promise<EgressLogEntry[]> {
    throw new RuntimeError('UNSUPPORTED', `egress logs are not recorded by this driver yet (sandbox ${runtimeId})`);
  }

  onEvent(): () => void {
    return () => {};
  }
  /** Opens every gate, now and from now on, so provisioning ends (call it before closing the server). */
  openAll(): void {
    this.allOpen = true;
    for (const gate of this.gates.values()) gate.open();
  }
  async close(): Promise<void> {}
}

import type { RuntimeCapabilities, RuntimeSandboxState } from '../runtime/runtime.js';
import { GatedRuntime } from './gated-runtime.js';

/**
 * The gated test runtime with pause and resume (`capabilities().pause`): it records which
 * sandboxes are frozen ({@link frozen}, by runtime id) and every call, in order ({@link calls}),
 * and reports `paused` in `list()`. It freezes nothing: it runs nothing.
 */
export class PausableRuntime extends GatedRuntime {
  readonly frozen = new Set<string>();
  readonly calls: string[] = [];

  override capabilities(): RuntimeCapabilities {
    return { ...super.capabilities(), pause: true };
  }

  async pause(runtimeId: string): Promise<void> {
    this.calls.push(`pause ${runtimeId}`);
    this.frozen.add(runtimeId);
  }

  async resume(runtimeId: string): Promise<void> {
    this.calls.push(`resume ${runtimeId}`);
    this.frozen.delete(runtimeId);
  }

  override async list(): Promise<RuntimeSandboxState[]> {
    return (await super.list()).map((s) => ({ ...s, paused: this.frozen.has(s.runtimeId) }));
  }
}

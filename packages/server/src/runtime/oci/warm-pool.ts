import type { SandboxSpec } from '../runtime.js';

/**
 * What a started-ahead ("warm") sandbox is made from: everything of a create that cannot be
 * changed once the sandbox runs. Two creates with the same template can take each other's warm
 * sandboxes; what differs per sandbox (id, limits, env, hostname, egress policy) is applied when
 * one is claimed.
 */
export interface WarmTemplate {
  /** Canonical image reference. */
  image: string;
  /** Null (the idle loop) or an idle command (`tail -f /dev/null`, `sleep infinity`): nothing else is pooled. */
  startCommand: string | null;
  /** With a network namespace that has a route out (the policy itself is applied at claim). */
  online: boolean;
  diskBytes: number;
  /** Normalized workspace path (made in the upper layer when the sandbox is filled). */
  workspacePath: string;
  /** Limits the sandbox is started with (the first create's); a claim sets its own. */
  cpuCores: number;
  memoryBytes: number;
  pidsLimit: number;
}

/** The key of a template: creates with equal keys can claim each other's warm sandboxes. */
export function templateKey(t: WarmTemplate): string {
  return JSON.stringify([t.image, t.startCommand, t.online, t.diskBytes, t.workspacePath]);
}

/**
 * The template of a create, or undefined when it cannot be served by a warm sandbox: a start
 * command that is not idle (its process would have been running before the tenant's env and
 * hostname existed), or GPUs.
 */
export function warmTemplateOf(spec: SandboxSpec, canonicalImage: string, workspacePath: string, online: boolean): WarmTemplate | undefined {
  if (spec.gpuCount > 0) return undefined;
  if (spec.startCommand !== null && idleProgram(spec.startCommand) === undefined) return undefined;
  return {
    image: canonicalImage,
    startCommand: spec.startCommand,
    online,
    diskBytes: spec.diskBytes,
    workspacePath,
    cpuCores: spec.cpuCores,
    memoryBytes: spec.memoryBytes,
    pidsLimit: spec.pidsLimit,
  };
}

/** The program an idle start command (the Prime SDK's default `tail -f /dev/null`, or `sleep infinity`) ends up as. */
export function idleProgram(startCommand: string): 'tail' | 'sleep' | undefined {
  const command = startCommand.trim().replace(/\s+/g, ' ');
  if (/^(exec )?tail -f \/dev\/null$/.test(command)) return 'tail';
  if (/^(exec )?sleep (infinity|inf)$/.test(command)) return 'sleep';
  return undefined;
}

/**
 * Recent creates per template, and how many warm sandboxes to keep from them: each template gets
 * as many as it had creates in the last `windowMs`, most used first, all templates together at
 * most `max`. A template with no create in the window gets none (its warm sandboxes are removed).
 */
export class WarmDemand {
  private readonly creates = new Map<string, { template: WarmTemplate; at: number[] }>();

  constructor(
    readonly max: number,
    readonly windowMs = 300_000,
  ) {}

  /** Counts one create of `template` at `now`. */
  record(template: WarmTemplate, now = Date.now()): void {
    const key = templateKey(template);
    const entry = this.creates.get(key);
    if (entry) entry.at.push(now);
    else this.creates.set(key, { template, at: [now] });
    this.expire(now);
  }

  /** Warm sandboxes to keep per template key, most used first (templates with a target of 0 left out). */
  targets(now = Date.now()): Map<string, { template: WarmTemplate; count: number }> {
    this.expire(now);
    const ranked = [...this.creates].sort((a, b) => b[1].at.length - a[1].at.length);
    const out = new Map<string, { template: WarmTemplate; count: number }>();
    let left = this.max;
    for (const [key, entry] of ranked) {
      const count = Math.min(left, entry.at.length);
      if (count <= 0) break;
      out.set(key, { template: entry.template, count });
      left -= count;
    }
    return out;
  }

  private expire(now: number): void {
    const since = now - this.windowMs;
    for (const [key, entry] of this.creates) {
      while (entry.at.length > 0 && (entry.at[0] ?? 0) <= since) entry.at.shift();
      if (entry.at.length === 0) this.creates.delete(key);
    }
  }
}

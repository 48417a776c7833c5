import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { runTool } from '../run-tool.js';
import type { EgressPolicy } from '../runtime.js';

/** The file whose existence lets a gated start command run (see {@link gatedCommand}). */
const GATE_FILE = '/dev/shm/.corral-egress-ready';

/**
 * The container command for a sandbox under an egress policy: it waits until the driver has
 * installed the sandbox's firewall rules (they need the address Docker gives at start) and opened
 * the gate, then runs the start command. Returns `Cmd` for the `/bin/sh -c` entrypoint.
 */
export function gatedCommand(command: string): string[] {
  return [`while [ ! -e ${GATE_FILE} ]; do sleep 0.02; done; rm -f ${GATE_FILE}; exec /bin/sh -c "$1"`, 'corral-egress-gate', command];
}

/** The exec that opens the gate once the rules are in. */
export const OPEN_GATE_ARGV = ['/bin/sh', '-c', `: > ${GATE_FILE}`];

/** A container's address on `network` and its init's pid (for its network namespace). */
export async function containerNetwork(docker: Docker, runtimeId: string, network: string): Promise<{ ip: string | undefined; pid: number; networkMode: string }> {
  const info = await docker.getContainer(runtimeId).inspect();
  const ip = info.NetworkSettings.Networks[network]?.IPAddress || undefined;
  return { ip, pid: info.State.Pid, networkMode: info.HostConfig.NetworkMode ?? '' };
}

/**
 * Prepares a sandbox's own network namespace (from the host, with `nsenter`) for a policy: Docker's
 * embedded DNS (127.0.0.11, answered by dockerd outside the firewall) is rejected, so names go
 * only through the egress resolver; and an empty allow list has no default route (given back,
 * via `gateway`, for any other policy). The sandbox cannot undo either: it has no NET_ADMIN.
 */
export async function prepareNamespace(pid: number, policy: EgressPolicy, gateway: string): Promise<void> {
  const ns = `--net=/proc/${pid}/ns/net`;
  await runTool('nsenter', [ns, '--', 'nft', '-f', '-'], {
    input: [
      'add table ip corral_egress',
      'add chain ip corral_egress output { type filter hook output priority filter; policy accept; }',
      'flush chain ip corral_egress output',
      'add rule ip corral_egress output ip daddr 127.0.0.11 reject',
      '',
    ].join('\n'),
  });
  const offline = policy.allowlist !== null && policy.allowlist.length === 0;
  const routes = (await runTool('nsenter', [ns, '--', 'ip', '-4', 'route', 'show', 'default'])).stdout.trim();
  if (offline && routes !== '') await runTool('nsenter', [ns, '--', 'ip', 'route', 'del', 'default']);
  if (!offline && routes === '') await runTool('nsenter', [ns, '--', 'ip', 'route', 'add', 'default', 'via', gateway]);
}

/** Where a sandbox's policy is kept beside its /etc files, so a restarted driver re-applies it. */
export function policyFile(etcDir: string, sandboxId: string): string {
  return join(etcDir, sandboxId, 'egress.json');
}

export async function savePolicy(etcDir: string, sandboxId: string, policy: EgressPolicy): Promise<void> {
  await writeFile(policyFile(etcDir, sandboxId), JSON.stringify(policy), { mode: 0o600 });
}

/** The recorded policy, or undefined for a sandbox that never had one. */
export async function loadPolicy(etcDir: string, sandboxId: string): Promise<EgressPolicy | undefined> {
  const text = await readFile(policyFile(etcDir, sandboxId), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as EgressPolicy);
}

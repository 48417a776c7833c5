import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Host paths of the files bind-mounted read-only over a sandbox's /etc/hosts, /etc/resolv.conf and /etc/hostname. */
export interface EtcFilePaths {
  hosts: string;
  resolvConf: string;
  hostname: string;
}

/**
 * Docker bind-mounts /etc/hosts, /etc/resolv.conf and /etc/hostname writable from its own data
 * disk, outside any sandbox limit. The driver writes these files itself, one directory per sandbox
 * under `dir`, and mounts them read-only (Docker then skips its own): a sandbox cannot fill a host
 * disk through them.
 */
export class SandboxEtcFiles {
  constructor(readonly dir: string) {}

  /**
   * Writes the three files for a sandbox. With network access, names resolve through Docker's
   * embedded DNS (127.0.0.11), as Docker's own file says, or through `resolver` (the egress
   * resolver) when given.
   */
  async write(sandboxId: string, hostname: string, networkAccess: boolean, resolver?: string): Promise<EtcFilePaths> {
    const dir = join(this.dir, sandboxId);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const paths: EtcFilePaths = { hosts: join(dir, 'hosts'), resolvConf: join(dir, 'resolv.conf'), hostname: join(dir, 'hostname') };
    const hosts = [`127.0.0.1\tlocalhost ${hostname}`, '::1\tlocalhost ip6-localhost ip6-loopback', ''].join('\n');
    await Promise.all([
      writeFile(paths.hosts, hosts, { mode: 0o644 }),
      writeFile(paths.resolvConf, resolver !== undefined ? resolverConf(resolver) : await resolvConf(networkAccess), { mode: 0o644 }),
      writeFile(paths.hostname, `${hostname}\n`, { mode: 0o644 }),
    ]);
    return paths;
  }

  /** Points a running sandbox's resolv.conf at `resolver`, in place (the read-only mount shows the same file). */
  async useResolver(sandboxId: string, resolver: string): Promise<void> {
    await writeFile(join(this.dir, sandboxId, 'resolv.conf'), resolverConf(resolver));
  }

  /** Deletes a sandbox's files. Idempotent. */
  async remove(sandboxId: string): Promise<void> {
    await rm(join(this.dir, sandboxId), { recursive: true, force: true });
  }
}

/** A resolv.conf naming only the egress resolver (`single-request`: see the oci driver's resolv.conf). */
function resolverConf(resolver: string): string {
  return `nameserver ${resolver}\noptions ndots:0 single-request timeout:2 attempts:3\n`;
}

/** Docker's embedded DNS for networked sandboxes (plus the host's search domains); the host's non-loopback nameservers otherwise. */
async function resolvConf(networkAccess: boolean): Promise<string> {
  const host = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const search = /^\s*search\s+(.+)$/m.exec(host)?.[1]?.trim();
  const servers = networkAccess
    ? ['127.0.0.11']
    : [...host.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1] ?? '').filter((s) => s && !/^(127\.|::1$)/.test(s));
  const lines = (servers.length > 0 ? servers : ['8.8.8.8', '8.8.4.4']).map((s) => `nameserver ${s}`);
  if (search) lines.push(`search ${search}`);
  if (networkAccess) lines.push('options ndots:0');
  return `${lines.join('\n')}\n`;
}

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The parts of an OCI `linux.seccomp` profile that the compiler reads. */
export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  syscalls?: { names: string[]; action: string; errnoRet?: number; args?: { index: number; value: number; valueTwo?: number; op: string }[] | null }[];
}

const ARCHES: Record<string, string> = {
  SCMP_ARCH_X86_64: 'x86_64',
  SCMP_ARCH_X86: 'x86',
  SCMP_ARCH_X32: 'x32',
  SCMP_ARCH_AARCH64: 'aarch64',
  SCMP_ARCH_ARM: 'arm',
};

const OPS: Record<string, string> = {
  SCMP_CMP_EQ: 'eq',
  SCMP_CMP_NE: 'ne',
  SCMP_CMP_LT: 'lt',
  SCMP_CMP_LE: 'le',
  SCMP_CMP_GT: 'gt',
  SCMP_CMP_GE: 'ge',
  SCMP_CMP_MASKED_EQ: 'masked_eq',
};

/** EPERM, what an `SCMP_ACT_ERRNO` action without `errnoRet` returns. */
const EPERM = 1;

/**
 * Writes `profile` in corral-seccomp's line format. Only what the default profile uses is
 * accepted: a denying default action (`SCMP_ACT_ERRNO`), and rules that allow or deny with an
 * errno; anything else throws, so the caller falls back to letting the OCI runtime compile it.
 */
export function seccompRules(profile: SeccompProfile): string {
  if (profile.defaultAction !== 'SCMP_ACT_ERRNO') throw new Error(`default action ${profile.defaultAction} is not supported by the precompiler`);
  const lines = [`default ${profile.defaultErrnoRet ?? EPERM}`];
  for (const arch of profile.architectures ?? []) {
    const name = ARCHES[arch];
    if (!name) throw new Error(`architecture ${arch} is not supported by the precompiler`);
    lines.push(`arch ${name}`);
  }
  for (const rule of profile.syscalls ?? []) {
    let action: string;
    if (rule.action === 'SCMP_ACT_ALLOW') action = 'allow 0';
    else if (rule.action === 'SCMP_ACT_ERRNO') action = `errno ${rule.errnoRet ?? EPERM}`;
    else throw new Error(`action ${rule.action} is not supported by the precompiler`);
    const args = (rule.args ?? []).map((a) => {
      const op = OPS[a.op];
      if (!op) throw new Error(`comparison ${a.op} is not supported by the precompiler`);
      return `${a.index} ${op} ${BigInt(a.value)} ${BigInt(a.valueTwo ?? 0)}`;
    });
    for (const name of rule.names) {
      if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`invalid syscall name ${name}`);
      lines.push(`rule ${action} ${name} ${args.length}${args.length ? ` ${args.join(' ')}` : ''}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Compiles `profile` to a BPF program with `compiler` (corral-seccomp) into
 * `<dir>/seccomp-<hash>.bpf`, once per distinct profile; returns the file's path.
 */
export async function compileSeccompProfile(profile: SeccompProfile, compiler: string, dir: string): Promise<string> {
  const rules = seccompRules(profile);
  const hash = createHash('sha256').update(compiler).update(rules).digest('hex').slice(0, 16);
  const path = join(dir, `seccomp-${hash}.bpf`);
  if (existsSync(path)) return path;
  await mkdir(dir, { recursive: true });
  const program = await new Promise<Buffer>((resolve, reject) => {
    const child = spawn(compiler, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`corral-seccomp failed (exit ${code}): ${err.trim()}`))));
    child.stdin.end(rules);
  });
  if (program.length === 0 || program.length % 8 !== 0) throw new Error(`corral-seccomp wrote ${program.length} bytes, not a BPF program`);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, program, { mode: 0o644 });
  await rename(tmp, path).catch(async (error: unknown) => {
    await rm(tmp, { force: true });
    throw error;
  });
  return path;
}

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ensureAgentBinary, ensureSeccompCompiler } from '../native-build.js';
import { defaultSeccompProfile } from './oci-spec.js';
import { compileSeccompProfile, seccompRules } from './seccomp-bpf.js';
import type { SeccompProfile } from './seccomp-bpf.js';

const REPO = new URL('../../../../../', import.meta.url).pathname;
const BIN = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'native-test');

describe('seccomp precompiler: rules', () => {
  it('writes the profile in corral-seccomp line format', () => {
    const text = seccompRules({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 38,
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
      syscalls: [
        { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
        { names: ['setns'], action: 'SCMP_ACT_ERRNO' },
        { names: ['socket'], action: 'SCMP_ACT_ERRNO', errnoRet: 22, args: [{ index: 0, value: 16, op: 'SCMP_CMP_EQ' }, { index: 2, value: 9, valueTwo: 0, op: 'SCMP_CMP_EQ' }] },
        { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 2114060288, op: 'SCMP_CMP_MASKED_EQ' }] },
      ],
    });
    assert.equal(
      text,
      [
        'default 38',
        'arch x86_64',
        'arch x86',
        'rule allow 0 read 0',
        'rule allow 0 write 0',
        'rule errno 1 setns 0',
        'rule errno 22 socket 2 0 eq 16 0 2 eq 9 0',
        'rule allow 0 clone 1 0 masked_eq 2114060288 0',
        '',
      ].join('\n'),
    );
  });

  it('refuses what it cannot express, so the runtime compiles such profiles itself', () => {
    assert.throws(() => seccompRules({ defaultAction: 'SCMP_ACT_ALLOW' }), /default action/);
    assert.throws(() => seccompRules({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['x'], action: 'SCMP_ACT_TRACE' }] }), /action/);
    assert.throws(() => seccompRules({ defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_MIPS'] }), /architecture/);
    assert.throws(() => seccompRules({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['a; b'], action: 'SCMP_ACT_ALLOW' }] }), /invalid syscall/);
  });
});

const skip = process.platform !== 'linux' || process.arch !== 'x64' ? 'needs Linux on x86_64' : undefined;

describe('seccomp precompiler: the compiled default profile, loaded by corral-agent', { skip }, () => {
  /**
   * Runs perl under `corral-agent init --seccomp-fd=4` with the compiled program on fd 4, and
   * returns the errno each syscall gave (0 when it succeeded).
   */
  async function errnos(bpf: string, calls: Record<string, string>): Promise<Record<string, number>> {
    const agent = await ensureAgentBinary(BIN);
    const script = Object.entries(calls)
      .map(([name, call]) => `$! = 0; my $r_${name} = ${call}; print "${name} ", ($r_${name} == -1 ? $! + 0 : 0), "\\n";`)
      .join(' ');
    const fd = openSync(bpf, 'r');
    try {
      const child = spawn(agent, ['init', '--seccomp-fd=4', '--', 'perl', '-e', script], { stdio: ['ignore', 'pipe', 'pipe', 'ignore', fd] });
      let out = '';
      let err = '';
      child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      assert.equal(code, 0, err);
      return Object.fromEntries(out.trim().split('\n').map((line) => [line.split(' ')[0] ?? '', Number(line.split(' ')[1])]));
    } finally {
      closeSync(fd);
    }
  }

  it('allows what the profile allows and denies the rest with the profile errno', async () => {
    const compiler = await ensureSeccompCompiler(BIN);
    const bpf = await compileSeccompProfile(defaultSeccompProfile() as SeccompProfile, compiler, BIN);
    assert.equal(readFileSync(bpf).length % 8, 0);
    assert.equal(await compileSeccompProfile(defaultSeccompProfile() as SeccompProfile, compiler, BIN), bpf, 'cached by content');
    // x86_64 numbers: getpid 39, setns 308, clone3 435, reboot 169, socket 41, kexec_load 246.
    const got = await errnos(bpf, {
      getpid: 'syscall(39)',
      setns: 'syscall(308, -1, 0)',
      clone3: 'syscall(435, 0, 0)',
      reboot: 'syscall(169, 0, 0, 0, 0)',
      kexec: 'syscall(246, 0, 0, 0, 0)',
      audit: 'syscall(41, 16, 3, 9)',
      unix: 'syscall(41, 1, 1, 0)',
    });
    assert.deepEqual(got, { getpid: 0, setns: 1, clone3: 38, reboot: 38, kexec: 1, audit: 22, unix: 0 });
  });

  it('the agent refuses to start when the program is not there or malformed', async () => {
    const agent = await ensureAgentBinary(BIN);
    const fd = openSync('/dev/null', 'r');
    try {
      const child = spawn(agent, ['init', '--seccomp-fd=4', '--', 'true'], { stdio: ['ignore', 'ignore', 'pipe', 'ignore', fd] });
      let err = '';
      child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      assert.equal(code, 1);
      assert.match(err, /seccomp program is unreadable or malformed/);
    } finally {
      closeSync(fd);
    }
  });
});

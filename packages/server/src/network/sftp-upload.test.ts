import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createSandbox, dockerMissing, execCall, startGatewayServer, type GatewaySandbox, type GatewayTestServer } from '../gateway/test-support.js';
import { api } from './network-test-support.js';

interface SshSession {
  session_id: string;
  host: string;
  port: number;
  gateway_url: string;
  user_ns: string;
  job_id: string;
  token: string;
}

function hasTool(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const missing = dockerMissing() ?? (process.getuid?.() !== 0 ? 'needs root to mount a tmpfs' : hasTool('scp') && hasTool('ssh-keygen') ? undefined : 'OpenSSH client (scp, ssh-keygen) not installed');

describe('SFTP uploads are written in the sandbox, not staged on the host', { skip: process.env.CI !== 'true' && missing !== undefined ? missing : false }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;
  let dir: string;
  let smallTmp: string;

  before(async () => {
    server = await startGatewayServer({ sshPort: 0 });
    sb = await createSandbox(server, { network_access: false });
    dir = mkdtempSync(join(tmpdir(), 'corral-sftp-test-'));
    // A 1 MiB temporary directory: an upload staged on the host cannot fit in it.
    smallTmp = join(dir, 'small-tmp');
    mkdirSync(smallTmp);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', smallTmp]);
  });
  after(async () => {
    await server?.close();
    if (smallTmp) execFileSync('umount', [smallTmp]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('an scp upload larger than the host\'s temporary space lands in the sandbox, and a smaller upload over it replaces it', async () => {
    const key = join(dir, 'id_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const created = await api<SshSession>(server, 'POST', `/sandbox/${sb.id}/ssh-session`, {});
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const s = created.body;
    const auth = await fetch(`${s.gateway_url}/${s.user_ns}/${s.job_id}/authorize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ session_id: s.session_id, public_key: readFileSync(`${key}.pub`, 'utf8'), ttl_seconds: 300 }),
    });
    assert.equal(auth.status, 200);
    const options = ['-i', key, '-P', String(s.port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-o', 'IdentitiesOnly=yes'];
    const scp = (args: string[]) =>
      new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile('scp', [...options, ...args], { timeout: 120_000 }, (error, _out, stderr) => resolve({ code: error ? Number(error.code ?? -1) : 0, stderr })),
      );
    const local = join(dir, 'big.bin');
    const payload = randomBytes(8 * 1024 * 1024 + 5);
    writeFileSync(local, payload);
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = smallTmp;
    let up: { code: number; stderr: string };
    try {
      up = await scp([local, `${s.session_id}@${s.host}:/tmp/big.bin`]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(readdirSync(smallTmp), []);
    const sum = await execCall(sb, { command: 'wc -c < /tmp/big.bin; md5sum /tmp/big.bin' });
    assert.equal(sum.body.stdout.split('\n')[0]?.trim(), String(payload.length));
    const md5 = execFileSync('md5sum', [local], { encoding: 'utf8' }).split(' ')[0];
    assert.match(sum.body.stdout, new RegExp(`^${md5} `, 'm'));
    // A second upload over it truncates: the file is exactly the new content.
    const small = join(dir, 'small.bin');
    writeFileSync(small, 'hello\n');
    const again = await scp([small, `${s.session_id}@${s.host}:/tmp/big.bin`]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await execCall(sb, { command: 'cat /tmp/big.bin' })).body.stdout, 'hello\n');
  });
});

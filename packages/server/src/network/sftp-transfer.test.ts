import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import ssh2, { type SFTPWrapper } from 'ssh2';
import { createSandbox, dockerMissing, execCall, startGatewayServer, type GatewaySandbox, type GatewayTestServer } from '../gateway/test-support.js';
import { api, type SshSession, hasTool } from './network-test-support.js';

const missing = dockerMissing() ?? (process.getuid?.() !== 0 ? 'needs root to mount a tmpfs' : hasTool('scp') && hasTool('ssh-keygen') ? undefined : 'OpenSSH client (scp, ssh-keygen) not installed');

describe('SFTP transfers go straight to and from the sandbox, nothing is staged on the host', { skip: process.env.CI !== 'true' && missing !== undefined ? missing : false }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;
  let dir: string;
  let smallTmp: string;
  let key: string;
  let session: SshSession;
  let options: string[];

  before(async () => {
    server = await startGatewayServer({ sshPort: 0 });
    sb = await createSandbox(server, { network_access: false });
    dir = mkdtempSync(join(tmpdir(), 'corral-sftp-test-'));
    // A 1 MiB temporary directory: a transfer staged on the host cannot fit in it.
    smallTmp = join(dir, 'small-tmp');
    mkdirSync(smallTmp);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', smallTmp]);
    key = join(dir, 'id_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const created = await api<SshSession>(server, 'POST', `/sandbox/${sb.id}/ssh-session`, {});
    assert.equal(created.status, 200, JSON.stringify(created.body));
    session = created.body;
    const auth = await fetch(`${session.gateway_url}/${session.user_ns}/${session.job_id}/authorize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${session.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ session_id: session.session_id, public_key: readFileSync(`${key}.pub`, 'utf8'), ttl_seconds: 600 }),
    });
    assert.equal(auth.status, 200);
    options = ['-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-o', 'IdentitiesOnly=yes'];
  });
  after(async () => {
    await server?.close();
    if (smallTmp) execFileSync('umount', [smallTmp]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs an OpenSSH client (`scp` or `sftp`) with the server's TMPDIR pointing at the tiny tmpfs while it runs. */
  const client = async (tool: 'scp' | 'sftp', args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = smallTmp;
    try {
      return await new Promise((resolve) =>
        execFile(tool, [...options, '-P', String(session.port), ...args], { timeout: 120_000 }, (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code ?? -1) : 0, stdout, stderr }),
        ),
      );
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  };
  const md5 = (path: string): string => execFileSync('md5sum', [path], { encoding: 'utf8' }).split(' ')[0] as string;

  test('an scp upload larger than the host\'s temporary space lands in the sandbox, and a smaller upload over it replaces it', async () => {
    const s = session;
    const local = join(dir, 'big.bin');
    const payload = randomBytes(8 * 1024 * 1024 + 5);
    writeFileSync(local, payload);
    const up = await client('scp', [local, `${s.session_id}@${s.host}:/tmp/big.bin`]);
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(readdirSync(smallTmp), []);
    const sum = await execCall(sb, { command: 'wc -c < /tmp/big.bin; md5sum /tmp/big.bin' });
    assert.equal(sum.body.stdout.split('\n')[0]?.trim(), String(payload.length));
    assert.match(sum.body.stdout, new RegExp(`^${md5(local)} `, 'm'));
    // A second upload over it truncates: the file is exactly the new content.
    const small = join(dir, 'small.bin');
    writeFileSync(small, 'hello\n');
    const again = await client('scp', [small, `${s.session_id}@${s.host}:/tmp/big.bin`]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await execCall(sb, { command: 'cat /tmp/big.bin' })).body.stdout, 'hello\n');
  });

  test('scp and sftp downloads larger than the host\'s temporary space arrive intact, and reads at any offset return the right bytes', async () => {
    const s = session;
    // 8 MiB (and 5 bytes) of random bytes made in the sandbox.
    const made = await execCall(sb, { command: 'head -c 8388613 /dev/urandom > /tmp/down.bin && md5sum /tmp/down.bin', timeout: 60 });
    assert.equal(made.body.exit_code, 0, made.body.stderr);
    const sandboxMd5 = made.body.stdout.split(' ')[0];

    const viaScp = join(dir, 'down-scp.bin');
    const scp = await client('scp', [`${s.session_id}@${s.host}:/tmp/down.bin`, viaScp]);
    assert.equal(scp.code, 0, scp.stderr);
    assert.deepEqual(readdirSync(smallTmp), []);
    assert.equal(md5(viaScp), sandboxMd5);

    const viaSftp = join(dir, 'down-sftp.bin');
    const batch = join(dir, 'get.batch');
    writeFileSync(batch, `get /tmp/down.bin ${viaSftp}\n`);
    const sftp = await client('sftp', ['-b', batch, `${s.session_id}@${s.host}`]);
    assert.equal(sftp.code, 0, sftp.stderr + sftp.stdout);
    assert.deepEqual(readdirSync(smallTmp), []);
    assert.equal(md5(viaSftp), sandboxMd5);

    // Random-offset reads with an SFTP client, on the 8 MiB file and near the end of a 50 GiB sparse file.
    const whole = readFileSync(viaScp);
    const made2 = await execCall(sb, { command: 'dd if=/dev/null of=/tmp/sparse.bin bs=1 seek=53687091200 2>/dev/null && printf tail-bytes >> /tmp/sparse.bin && printf head >/tmp/h && dd if=/tmp/h of=/tmp/sparse.bin bs=1 seek=1073741824 conv=notrunc 2>/dev/null' });
    assert.equal(made2.body.exit_code, 0, made2.body.stderr);
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = smallTmp;
    const conn = new ssh2.Client();
    try {
      await new Promise<void>((resolve, reject) => {
        conn.once('ready', () => resolve()).once('error', reject);
        conn.connect({ host: s.host, port: s.port, username: s.session_id, privateKey: readFileSync(key) });
      });
      const sftpClient = await new Promise<SFTPWrapper>((resolve, reject) => conn.sftp((error, w) => (error ? reject(error) : resolve(w))));
      const readAt = async (path: string, position: number, length: number): Promise<Buffer> => {
        const handle = await new Promise<Buffer>((resolve, reject) => sftpClient.open(path, 'r', (error, h) => (error ? reject(error) : resolve(h))));
        try {
          const buffer = Buffer.alloc(length);
          let filled = 0;
          while (filled < length) {
            const n = await new Promise<number>((resolve, reject) =>
              sftpClient.read(handle, buffer, filled, length - filled, position + filled, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead))),
            );
            if (n === 0) break;
            filled += n;
          }
          return buffer.subarray(0, filled);
        } finally {
          await new Promise<void>((resolve) => sftpClient.close(handle, () => resolve()));
        }
      };
      // Several reads on one handle, jumping backwards and forwards.
      const handle = await new Promise<Buffer>((resolve, reject) => sftpClient.open('/tmp/down.bin', 'r', (error, h) => (error ? reject(error) : resolve(h))));
      for (const [position, length] of [[5 * 1024 * 1024 + 3, 70_000], [17, 1000], [8 * 1024 * 1024, 5], [4096, 32_768], [1, 1]] as const) {
        const buffer = Buffer.alloc(length);
        const n = await new Promise<number>((resolve, reject) =>
          sftpClient.read(handle, buffer, 0, length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead))),
        );
        assert.ok(n > 0, `read at ${position}`);
        assert.ok(buffer.subarray(0, n).equals(whole.subarray(position, position + n)), `bytes at ${position}`);
      }
      await new Promise<void>((resolve) => sftpClient.close(handle, () => resolve()));
      // More handles read in turn than the server keeps copies open for: each still reads its own bytes in sequence.
      const many = await Promise.all(
        Array.from({ length: 11 }, () => new Promise<Buffer>((resolve, reject) => sftpClient.open('/tmp/down.bin', 'r', (error, h) => (error ? reject(error) : resolve(h))))),
      );
      for (let round = 0; round < 3; round++) {
        for (const [i, h] of many.entries()) {
          const position = i * 500_000 + round * 20_000;
          const buffer = Buffer.alloc(20_000);
          const n = await new Promise<number>((resolve, reject) => sftpClient.read(h, buffer, 0, 20_000, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead))));
          assert.equal(n, 20_000);
          assert.ok(buffer.equals(whole.subarray(position, position + 20_000)), `handle ${i} round ${round}`);
        }
      }
      for (const h of many) await new Promise<void>((resolve) => sftpClient.close(h, () => resolve()));
      assert.ok((await readAt('/tmp/down.bin', 3_000_001, 100_000)).equals(whole.subarray(3_000_001, 3_100_001)));
      assert.equal((await readAt('/tmp/sparse.bin', 53687091200, 100)).toString(), 'tail-bytes');
      assert.equal((await readAt('/tmp/sparse.bin', 1073741824 - 2, 8)).toString('hex'), Buffer.from('\0\0head\0\0').toString('hex'));
      await assert.rejects(readAt('/tmp/no-such-file', 0, 1), /No such file/i);
      assert.deepEqual(readdirSync(smallTmp), []);
    } finally {
      conn.end();
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });
});

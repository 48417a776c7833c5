import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createSandbox, dockerMissing, execCall, startGatewayServer, type GatewaySandbox, type GatewayTestServer } from '../gateway/test-support.js';
import { api, canConnect, eventually, type SshSession, hasTool } from './network-test-support.js';

const missing = dockerMissing() ?? (hasTool('ssh') && hasTool('scp') && hasTool('sftp') && hasTool('ssh-keygen') ? undefined : 'OpenSSH client (ssh, scp, sftp, ssh-keygen) not installed');

describe('SSH sessions (docker, OpenSSH client)', { skip: process.env.CI !== 'true' && missing !== undefined ? missing : false }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;
  let dir: string;
  let key: string;

  before(async () => {
    server = await startGatewayServer({ sshPort: 0 });
    sb = await createSandbox(server, { network_access: false });
    dir = mkdtempSync(join(tmpdir(), 'corral-ssh-test-'));
    key = join(dir, 'id_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  });
  after(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const sshOptions = (s: SshSession, identity = key): string[] => [
    '-i', identity, '-p', String(s.port),
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR',
    '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10',
  ];
  const ssh = (s: SshSession, args: string[], identity = key) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('ssh', [...sshOptions(s, identity), `${s.session_id}@${s.host}`, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  const openSession = async (body: Record<string, unknown> = {}): Promise<SshSession> => {
    const created = await api<SshSession>(server, 'POST', `/sandbox/${sb.id}/ssh-session`, body);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    return created.body;
  };
  const authorize = async (s: SshSession, publicKey: string, ttl = 300, token = s.token) => {
    const res = await fetch(`${s.gateway_url}/${s.user_ns}/${s.job_id}/authorize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ session_id: s.session_id, public_key: publicKey, ttl_seconds: ttl }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  test('commands run with their exit code; a PTY shell works; scp and sftp copy files', async () => {
    const s = await openSession({});
    assert.equal(s.host, '127.0.0.1');
    assert.equal((await authorize(s, readFileSync(`${key}.pub`, 'utf8'))).status, 200);

    const cmd = await ssh(s, ['echo hello-$((6*7)); echo oops >&2; exit 3']);
    assert.equal(cmd.code, 3, cmd.stderr);
    assert.equal(cmd.stdout, 'hello-42\n');
    assert.match(cmd.stderr, /oops/);

    // Interactive shell with a PTY: the terminal size the client asked for is the one the shell sees.
    const shell = spawn('ssh', [...sshOptions(s), '-tt', `${s.session_id}@${s.host}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    shell.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    shell.stdin.write('stty size; echo marker-$((1+1)); exit 5\n');
    const code = await new Promise<number | null>((resolve) => shell.on('close', resolve));
    assert.equal(code, 5, output);
    assert.match(output, /marker-2/);
    assert.match(output, /\d+ \d+/);

    // Resizing the client's terminal resizes the sandbox's PTY (tmux drives a real terminal).
    if (hasTool('tmux')) {
      const name = `corral-ssh-${randomBytes(3).toString('hex')}`;
      const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });
      tmux('new-session', '-d', '-s', name, '-x', '100', '-y', '30', ['ssh', ...sshOptions(s), `${s.session_id}@${s.host}`].join(' '));
      try {
        // The resize reaches the sandbox asynchronously: ask again until the new size shows.
        const size = (rows: number, cols: number) =>
          eventually(async () => {
            tmux('send-keys', '-t', name, 'clear; stty size', 'Enter');
            await new Promise((r) => setTimeout(r, 300));
            return tmux('capture-pane', '-p', '-t', name).includes(`${rows} ${cols}`);
          }, 10_000, `stty size ${rows} ${cols}`);
        await size(30, 100);
        tmux('resize-window', '-t', name, '-x', '120', '-y', '40');
        await size(40, 120);
      } finally {
        tmux('kill-session', '-t', name);
      }
    }

    // scp (SFTP protocol in OpenSSH 9) both ways, including a file larger than one SFTP packet.
    const local = join(dir, 'upload.bin');
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(local, payload);
    const scp = (args: string[]) =>
      new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile('scp', [...sshOptions(s).map((o) => (o === '-p' ? '-P' : o)), ...args], { timeout: 60_000 }, (error, _out, stderr) =>
          resolve({ code: error ? Number(error.code ?? -1) : 0, stderr }),
        ),
      );
    const up = await scp([local, `${s.session_id}@${s.host}:/tmp/uploaded.bin`]);
    assert.equal(up.code, 0, up.stderr);
    const size = await execCall(sb, { command: 'wc -c < /tmp/uploaded.bin' });
    assert.equal(size.body.stdout.trim(), String(payload.length));
    const back = join(dir, 'download.bin');
    const down = await scp([`${s.session_id}@${s.host}:/tmp/uploaded.bin`, back]);
    assert.equal(down.code, 0, down.stderr);
    assert.ok(readFileSync(back).equals(payload));

    const batch = join(dir, 'batch');
    writeFileSync(batch, ['mkdir /tmp/sftp-dir', `put ${local} /tmp/sftp-dir/a.bin`, 'rename /tmp/sftp-dir/a.bin /tmp/sftp-dir/b.bin', 'ls -l /tmp/sftp-dir', 'rm /tmp/sftp-dir/b.bin', 'rmdir /tmp/sftp-dir', ''].join('\n'));
    const sftp = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile('sftp', [...sshOptions(s).map((o) => (o === '-p' ? '-P' : o)), '-b', batch, `${s.session_id}@${s.host}`], { timeout: 60_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? -1) : 0, stdout, stderr }),
      ),
    );
    assert.equal(sftp.code, 0, sftp.stderr + sftp.stdout);
    assert.match(sftp.stdout, /b\.bin/);
    const gone = await execCall(sb, { command: 'ls /tmp/sftp-dir 2>&1; echo rc=$?' });
    assert.match(gone.body.stdout, /rc=1|No such file/);
  });

  test('keys work only for their own session; bad input and foreign tenants are refused', async () => {
    const a = await openSession();
    const b = await openSession({ ttl_seconds: 120 });
    assert.equal((await authorize(a, readFileSync(`${key}.pub`, 'utf8'))).status, 200);
    const denied = await ssh(b, ['true']);
    assert.equal(denied.code, 255);
    assert.match(denied.stderr, /Permission denied/);
    assert.equal((await ssh(a, ['true'])).code, 0);

    assert.equal((await authorize(a, 'not a key')).status, 400);
    assert.equal((await authorize({ ...a, session_id: 'ssh-nope' }, readFileSync(`${key}.pub`, 'utf8'))).status, 404);
    assert.equal((await authorize(a, readFileSync(`${key}.pub`, 'utf8'), 300, 'bad-token')).status, 401);
    assert.equal((await api(server, 'POST', `/sandbox/${sb.id}/ssh-session`, { ttl_seconds: 10 })).status, 422);
    assert.equal((await api(server, 'POST', `/sandbox/${sb.id}/ssh-session`, { ttl_seconds: 3601 })).status, 422);

    const other = await server.t.createUser(`ssh-other-${randomBytes(3).toString('hex')}`);
    assert.equal((await api(server, 'POST', `/sandbox/${sb.id}/ssh-session`, {}, other.key)).status, 404);
    assert.equal((await api(server, 'DELETE', `/sandbox/${sb.id}/ssh-session/${a.session_id}`, undefined, other.key)).status, 404);
    assert.equal((await api(server, 'DELETE', `/sandbox/${sb.id}/ssh-session/ssh-unknown`)).status, 404);
  });

  test('deleting a session or reaching its expiry closes open connections', async () => {
    const s = await openSession();
    await authorize(s, readFileSync(`${key}.pub`, 'utf8'));
    const started = Date.now();
    const long = ssh(s, ['sleep 60']);
    await eventually(async () => (await execCall(sb, { command: 'ps | grep -c "[s]leep 60"' })).body.stdout.trim() !== '0', 15_000, 'sleep to start');
    assert.equal((await api(server, 'DELETE', `/sandbox/${sb.id}/ssh-session/${s.session_id}`)).status, 200);
    // The session's opening and closing are in the sandbox's timeline.
    const timeline = await api<{ events: Array<{ type: string; data: { sessionId?: string } }> }>(server, 'GET', `/sandbox/${sb.id}/events?limit=1000`);
    const mine = timeline.body.events.filter((e) => e.data.sessionId === s.session_id).map((e) => e.type);
    assert.deepEqual(mine, ['ssh.session_created', 'ssh.session_deleted']);
    const ended = await long;
    assert.notEqual(ended.code, 0);
    assert.ok(Date.now() - started < 30_000);
    // The process started for the session is gone, and the session's key no longer logs in.
    await eventually(async () => (await execCall(sb, { command: 'ps | grep -c "[s]leep 60"' })).body.stdout.trim() === '0', 15_000, 'sleep to be killed');
    assert.equal((await ssh(s, ['true'])).code, 255);

    // Expiry: a session stored to expire in 3 s (the API's minimum TTL is 60 s).
    const short = await openSession();
    const store = server.t.server.store;
    const row = await store.getSshSession(short.session_id);
    assert.ok(row);
    await store.deleteSshSession(short.session_id);
    await store.insertSshSession({ ...row, expiresAt: new Date(Date.now() + 3000).toISOString() });
    await authorize(short, readFileSync(`${key}.pub`, 'utf8'));
    const cut = await ssh(short, ['sleep 30']);
    assert.notEqual(cut.code, 0);
    assert.equal((await ssh(short, ['true'])).code, 255);
    await eventually(async () => (await store.getSshSession(short.session_id)) === undefined, 5000, 'expired session row to go');
    assert.equal(await canConnect(short.port), true);
  });
});

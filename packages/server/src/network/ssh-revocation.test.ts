import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createSandbox, dockerMissing, startGatewayServer, type GatewaySandbox, type GatewayTestServer } from '../gateway/test-support.js';
import { api, type SshSession, hasTool } from './network-test-support.js';

const missing = dockerMissing() ?? (hasTool('ssh') && hasTool('ssh-keygen') ? undefined : 'OpenSSH client (ssh, ssh-keygen) not installed');

describe('SSH sessions end with the key they were opened with (docker, OpenSSH client)', { skip: process.env.CI !== 'true' && missing !== undefined ? missing : false }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;
  let dir: string;
  let identity: string;

  before(async () => {
    server = await startGatewayServer({ sshPort: 0 });
    sb = await createSandbox(server, { network_access: false });
    dir = mkdtempSync(join(tmpdir(), 'corral-ssh-revoke-'));
    identity = join(dir, 'id_ed25519');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', identity]);
  });
  after(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const sshArgs = (s: SshSession): string[] => [
    '-i', identity, '-p', String(s.port),
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR',
    '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10', `${s.session_id}@${s.host}`,
  ];

  test('revoking the key closes the live SSH connection and refuses new logins', async () => {
    const extra = await api<{ id: string; key: string }>(server, 'POST', '/keys', { name: 'ssh-only' });
    assert.equal(extra.status, 201);
    const opened = await api<SshSession>(server, 'POST', `/sandbox/${sb.id}/ssh-session`, {}, extra.body.key);
    assert.equal(opened.status, 200, JSON.stringify(opened.body));
    const s = opened.body;
    const authorized = await fetch(`${s.gateway_url}/${s.user_ns}/${s.job_id}/authorize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ session_id: s.session_id, public_key: readFileSync(`${identity}.pub`, 'utf8'), ttl_seconds: 600 }),
    });
    assert.equal(authorized.status, 200);

    const live = spawn('ssh', [...sshArgs(s), 'echo ready; sleep 60'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => live.once('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      let out = '';
      live.stdout.on('data', (c: Buffer) => {
        out += c.toString('utf8');
        if (out.includes('ready')) resolve();
      });
      live.once('close', () => reject(new Error(`ssh ended before it was ready: ${out}`)));
    });
    assert.equal((await api(server, 'DELETE', `/keys/${extra.body.id}`)).status, 200);
    const code = await Promise.race([exited, new Promise<'still open'>((resolve) => setTimeout(() => resolve('still open'), 5_000))]);
    if (code === 'still open') live.kill('SIGKILL');
    assert.notEqual(code, 'still open', 'the live SSH connection is closed within seconds');
    assert.equal(await server.t.server.store.getSshSession(s.session_id), undefined, 'the session is deleted');
    const again = await new Promise<number>((resolve) =>
      execFile('ssh', [...sshArgs(s), 'true'], { timeout: 30_000 }, (error) => resolve(error ? Number(error.code ?? -1) : 0)),
    );
    assert.equal(again, 255, 'the key no longer logs in');
  });
});

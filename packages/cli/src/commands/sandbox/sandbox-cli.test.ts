import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { type ListeningServer, TEST_IMAGE, dockerMissing, needDocker, startServer } from '../../testing/cli-test-server.js';
import { runCli } from '../../testing/spawn-cli.js';

const MAIN = fileURLToPath(new URL('../../main.ts', import.meta.url));
const missing = dockerMissing();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tmuxMissing(): string | undefined {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'tmux is not installed (apt-get install tmux)';
  }
}

describe('corral sandbox … against a real server', { concurrency: true, timeout: 120_000 }, () => {
  let server: ListeningServer;
  let env: NodeJS.ProcessEnv;
  const home = mkdtempSync(join(tmpdir(), 'corral-cli-home-'));
  before(async () => {
    if (missing) return;
    server = await startServer();
    env = { CORRAL_API_URL: server.url, CORRAL_API_KEY: server.t.adminKey, XDG_CONFIG_HOME: join(home, 'config') };
  });
  after(async () => {
    await server?.close();
    rmSync(home, { recursive: true, force: true });
  });

  it('create --wait, list json, exec exit code, upload/download round trip, logs, delete', async (t) => {
    if (!needDocker(t)) return;
    const label = `cli-${randomBytes(3).toString('hex')}`;
    const created = await runCli(['sandbox', 'create', TEST_IMAGE, '--wait', '--label', label, '--memory-gb', '0.25', '-e', 'GREETING=hi'], env);
    assert.equal(created.code, 0, created.stderr);
    const id = created.stdout.trim();
    assert.match(id, /^[a-z0-9]{24}$/);
    assert.match(created.stderr, /is RUNNING/);

    const listed = await runCli(['sandbox', 'list', '--label', label, '--output', 'json'], env);
    assert.equal(listed.code, 0, listed.stderr);
    const page = JSON.parse(listed.stdout) as { sandboxes: Array<{ id: string; status: string }> };
    assert.deepEqual(page.sandboxes.map((s) => [s.id, s.status]), [[id, 'RUNNING']]);
    const table = await runCli(['sandbox', 'list', '--label', label], env);
    assert.match(table.stdout, /^ID\s+NAME\s+IMAGE\s+STATUS\s+AGE/);
    assert.match(table.stdout, new RegExp(`${id}\\s+\\S+\\s+${TEST_IMAGE.replace(/[/.]/g, '\\$&')}\\s+RUNNING`));

    const exec = await runCli(['sandbox', 'exec', id, '--', 'sh', '-c', 'echo "$GREETING $0"; echo err >&2; exit 4', 'there'], env);
    assert.equal(exec.code, 4, exec.stderr);
    assert.equal(exec.stdout, 'hi there\n');
    assert.equal(exec.stderr, 'err\n');

    const dir = mkdtempSync(join(tmpdir(), 'corral-cli-files-'));
    try {
      const local = join(dir, 'data.bin');
      writeFileSync(local, randomBytes(2 * 1024 * 1024 + 3));
      const up = await runCli(['sandbox', 'upload', id, local, '/sandbox-workspace/in/'], env);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stderr, /upload \/sandbox-workspace\/in\/data.bin: 2\.0 MiB done/);
      const back = join(dir, 'back.bin');
      const down = await runCli(['sandbox', 'download', id, '/sandbox-workspace/in/data.bin', back], env);
      assert.equal(down.code, 0, down.stderr);
      assert.deepEqual(readFileSync(back), readFileSync(local));
      const absent = await runCli(['sandbox', 'download', id, '/nope.txt', join(dir, 'x')], env);
      assert.equal(absent.code, 2);
      assert.match(absent.stderr, /not found/i);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    assert.equal((await runCli(['sandbox', 'logs', id], env)).code, 0);
    const deleted = await runCli(['sandbox', 'delete', '--label', label], env);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout.trim(), id);
  });

  it('says what to do: unknown sandbox, bad key, unreachable server; login stores the key with mode 0600', async (t) => {
    if (!needDocker(t)) return;
    const unknown = await runCli(['sandbox', 'exec', 'aaaaaaaaaaaaaaaaaaaaaaaa', '--', 'true'], env);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /not found.*corral sandbox list/);
    const badKey = await runCli(['sandbox', 'list'], { ...env, CORRAL_API_KEY: 'corral_wrong' });
    assert.equal(badKey.code, 2);
    assert.match(badKey.stderr, /CORRAL_API_KEY/);
    const down = await runCli(['sandbox', 'list'], { ...env, CORRAL_API_URL: 'http://127.0.0.1:9' });
    assert.equal(down.code, 1);
    assert.match(down.stderr, /Cannot reach Corral at http:\/\/127\.0\.0\.1:9.*corral serve/);

    const loginHome = join(home, 'login');
    const loginEnv = { XDG_CONFIG_HOME: loginHome, CORRAL_API_URL: '', CORRAL_API_KEY: '', PRIME_API_KEY: '', PRIME_API_BASE_URL: '' };
    const login = await runCli(['login', '--api-url', server.url, '--api-key', server.t.adminKey], loginEnv);
    assert.equal(login.code, 0, login.stderr);
    const file = join(loginHome, 'corral', 'config.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const listed = await runCli(['sandbox', 'list', '--output', 'json'], loginEnv);
    assert.equal(listed.code, 0, listed.stderr);
  });

  it('exec -it gives an interactive PTY in a real terminal (tmux), with resize', async (t) => {
    if (!needDocker(t)) return;
    const noTmux = tmuxMissing();
    if (noTmux) {
      if (process.env.CI === 'true') throw new Error(noTmux);
      t.skip(noTmux);
      return;
    }
    const created = await runCli(['sandbox', 'create', TEST_IMAGE, '--wait', '--memory-gb', '0.25'], env);
    assert.equal(created.code, 0, created.stderr);
    const id = created.stdout.trim();
    const session = `corral-${randomBytes(3).toString('hex')}`;
    const tmux = (...args: string[]): string => execFileSync('tmux', args, { encoding: 'utf8' });
    const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const command = ['env', ...envArgs, process.execPath, '--conditions=development', '--import', 'tsx', MAIN, 'sandbox', 'exec', '-it', id, 'sh']
      .map((a) => `'${a.replace(/'/g, `'"'"'`)}'`)
      .join(' ')
      .concat('; echo EXIT=$?; sleep 30');
    tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', '-c', process.cwd(), command);
    const screen = (): string => tmux('capture-pane', '-p', '-t', session);
    const waitFor = async (pattern: RegExp, what: string): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (!pattern.test(screen())) {
        if (Date.now() > deadline) throw new Error(`no ${what} on the terminal:\n${screen()}`);
        await sleep(200);
      }
    };
    try {
      await waitFor(/[#$]\s*$/m, 'shell prompt');
      tmux('send-keys', '-t', session, 'stty size', 'Enter');
      await waitFor(/^30 100$/m, 'initial size 30x100');
      tmux('resize-window', '-t', session, '-x', '120', '-y', '40');
      await sleep(500);
      tmux('send-keys', '-t', session, 'clear; stty size', 'Enter');
      await waitFor(/^40 120$/m, 'resized 40x120');
      tmux('send-keys', '-t', session, 'exit 3', 'Enter');
      await waitFor(/EXIT=3/, 'the exit code of the session');
    } finally {
      execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' });
      await runCli(['sandbox', 'delete', id], env);
    }
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { type GatewaySandbox, type GatewayTestServer, createSandbox, dockerMissing, execCall, startGatewayServer } from './test-support.js';

const missing = dockerMissing();

/** A streaming-exec client that records everything the server sends. */
class StreamClient {
  readonly ws: WebSocket;
  stdout = '';
  stderr = '';
  readonly messages: Array<Record<string, unknown>> = [];
  readonly closed: Promise<{ code: number }>;
  readonly opened: Promise<void>;

  constructor(sb: GatewaySandbox, options: { token?: 'header' | 'query' } = {}) {
    const url = sb.base.replace(/^http/, 'ws') + '/stream' + (options.token === 'query' ? `?token=${encodeURIComponent(sb.token)}` : '');
    this.ws = new WebSocket(url, options.token === 'query' ? {} : { headers: { authorization: `Bearer ${sb.token}` } });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) {
        if (data[0] === 1) this.stdout += data.subarray(1).toString('utf8');
        else if (data[0] === 2) this.stderr += data.subarray(1).toString('utf8');
        else throw new Error(`unknown channel ${data[0]}`);
      } else {
        this.messages.push(JSON.parse(data.toString('utf8')) as Record<string, unknown>);
      }
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code) => resolve({ code })));
  }

  async start(message: Record<string, unknown>): Promise<void> {
    await this.opened;
    this.ws.send(JSON.stringify({ type: 'start', ...message }));
  }

  send(message: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  /** Resolves once stdout contains `text` (10 s at most). */
  async waitForStdout(text: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!this.stdout.includes(text)) {
      if (Date.now() > deadline) throw new Error(`stdout never showed ${JSON.stringify(text)}; got ${JSON.stringify(this.stdout)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  exit(): Record<string, unknown> | undefined {
    return this.messages.find((m) => m.type === 'exit');
  }
}

/** Polls until `ps` shows no process whose args start with `pattern`. */
async function waitGone(sb: GatewaySandbox, pattern: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await execCall(sb, { command: `ps -o args | grep -c '^${pattern}' || true` });
    if (r.body.stdout.trim() === '0') return;
    if (Date.now() > deadline) throw new Error(`${pattern} still running`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('gateway streaming exec (Docker)', { concurrency: true, timeout: 60_000, skip: missing !== undefined && process.env.CI !== 'true' ? missing : undefined }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    server = await startGatewayServer();
    sb = await createSandbox(server);
  });
  after(async () => server?.close());

  it('streams stdout and stderr on their channels and ends with the exit code', async () => {
    const c = new StreamClient(sb);
    await c.start({ command: 'echo out; echo err >&2; echo more; exit 3' });
    const { code } = await c.closed;
    assert.equal(code, 1000);
    assert.equal(c.stdout, 'out\nmore\n');
    assert.equal(c.stderr, 'err\n');
    assert.deepEqual(c.messages, [{ type: 'started' }, { type: 'exit', exit_code: 3 }]);
  });

  it('takes the token from ?token= and runs argv without a shell', async () => {
    const c = new StreamClient(sb, { token: 'query' });
    await c.start({ argv: ['echo', '$HOME', 'two words'], env: { X: '1' }, cwd: '/tmp' });
    await c.closed;
    assert.equal(c.stdout, '$HOME two words\n');
    assert.deepEqual(c.exit(), { type: 'exit', exit_code: 0 });
  });

  it('writes stdin (binary and JSON frames) and passes EOF', async () => {
    const c = new StreamClient(sb);
    await c.start({ argv: ['cat'], stdin: true });
    c.ws.send(Buffer.from('hello '));
    c.send({ type: 'stdin', data: 'wor' });
    c.send({ type: 'stdin', data: Buffer.from('ld').toString('base64'), encoding: 'base64' });
    c.send({ type: 'stdin_eof' });
    await c.closed;
    assert.equal(c.stdout, 'hello world');
    assert.deepEqual(c.exit(), { type: 'exit', exit_code: 0 });
  });

  it('allocates a PTY of the asked size and resizes it', async () => {
    const c = new StreamClient(sb);
    await c.start({ command: 'stty size; read line; stty size', tty: { rows: 24, cols: 80 } });
    await c.waitForStdout('24 80');
    c.send({ type: 'resize', rows: 50, cols: 132 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    c.ws.send(Buffer.from('go\r'));
    await c.closed;
    assert.match(c.stdout, /50 132/);
    assert.equal(c.stderr, '');
    assert.deepEqual(c.exit(), { type: 'exit', exit_code: 0 });
  });

  it('delivers signals to the process', async () => {
    const c = new StreamClient(sb);
    await c.start({ command: "trap 'echo got-int; exit 5' INT; echo ready; while true; do sleep 0.1; done" });
    await c.waitForStdout('ready');
    c.send({ type: 'signal', signal: 'SIGINT' });
    await c.closed;
    assert.match(c.stdout, /got-int/);
    assert.deepEqual(c.exit(), { type: 'exit', exit_code: 5 });
  });

  it('kills the process tree when the client disconnects', async () => {
    const c = new StreamClient(sb);
    await c.start({ command: 'sleep 1004 & echo ready; sleep 1005' });
    await c.waitForStdout('ready');
    c.ws.terminate();
    await waitGone(sb, 'sleep 100[45]');
  });

  it('leaves a detached process running after the client disconnects', async () => {
    const c = new StreamClient(sb);
    await c.start({ command: 'echo ready; sleep 1; echo done > /tmp/detached-done', detach: true });
    await c.waitForStdout('ready');
    c.ws.close();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const r = await execCall(sb, { command: 'cat /tmp/detached-done' });
    assert.equal(r.body.stdout, 'done\n');
  });

  it('kills the process at its timeout and says so', async () => {
    const c = new StreamClient(sb);
    await c.start({ command: 'sleep 1006', timeout: 1 });
    await c.closed;
    assert.equal(c.exit()?.timed_out, true);
    await waitGone(sb, 'sleep 1006');
  });

  it('answers a bad start message with an error and closes', async () => {
    const c = new StreamClient(sb);
    await c.start({ argv: [] });
    const { code } = await c.closed;
    assert.equal(code, 1008);
    assert.equal(c.messages[0]?.type, 'error');
    assert.equal(c.messages[0]?.error, 'invalid_start');
  });

  it('refuses an upgrade without a valid token with 401', async () => {
    const url = sb.base.replace(/^http/, 'ws') + '/stream';
    for (const headers of [{}, { authorization: 'Bearer nope' }]) {
      const ws = new WebSocket(url, { headers });
      const status = await new Promise<number>((resolve, reject) => {
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.once('open', () => reject(new Error('opened without a token')));
        ws.once('error', () => undefined);
      });
      assert.equal(status, 401);
    }
    const plain = await fetch(`${sb.base}/stream`, { headers: { authorization: `Bearer ${sb.token}` } });
    assert.equal(plain.status, 426);
  });
});

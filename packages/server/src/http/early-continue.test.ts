import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type TestServer, startTestServer } from '../testing/test-server.js';

/** A kept-alive raw connection that reads one answer at a time: the interim 1xx heads it saw, and the final one. */
class RawConnection {
  private buffered = Buffer.alloc(0);
  private wake: (() => void) | undefined;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.wake?.();
    });
  }

  static async open(url: URL, noDelay: boolean): Promise<RawConnection> {
    const socket = connect({ host: url.hostname, port: Number(url.port), noDelay });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawConnection(socket);
  }

  private async more(): Promise<void> {
    await new Promise<void>((resolve) => (this.wake = resolve));
    this.wake = undefined;
  }

  /** Reads heads until a final one, then its Content-Length body. */
  async answer(): Promise<{ interim: string[]; status: number; body: string }> {
    const interim: string[] = [];
    for (;;) {
      const end = this.buffered.indexOf('\r\n\r\n');
      if (end < 0) {
        await this.more();
        continue;
      }
      const head = this.buffered.subarray(0, end).toString('latin1');
      const status = Number(head.split(' ')[1]);
      if (status < 200) {
        interim.push(head);
        this.buffered = this.buffered.subarray(end + 4);
        continue;
      }
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      while (this.buffered.length < end + 4 + length) await this.more();
      const body = this.buffered.subarray(end + 4, end + 4 + length).toString('utf8');
      this.buffered = this.buffered.subarray(end + 4 + length);
      return { interim, status, body };
    }
  }
}

describe('a request body sent apart from its head (httpx without TCP_NODELAY, on a kept-alive connection)', { timeout: 60_000 }, () => {
  let t: TestServer;
  let url: URL;
  before(async () => {
    t = await startTestServer();
    url = new URL(await t.server.listen());
  });
  after(async () => t.close());

  const body = JSON.stringify({ sandbox_ids: ['nosuchsandbox0000000000000'] });
  const head = (): string =>
    `POST /api/v1/sandbox/status:batchGet HTTP/1.1\r\nHost: ${url.host}\r\nAccept: */*\r\nConnection: keep-alive\r\n` +
    `User-Agent: prime-sandboxes/0.2.39 python/3.11.7\r\n` +
    `Authorization: Bearer ${t.adminKey}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\n\r\n`;

  it('is answered without waiting for the delayed ACK (40 ms): the server answers 100 Continue at once', async () => {
    const connection = await RawConnection.open(url, false);
    try {
      const times: number[] = [];
      for (let i = 0; i < 40; i++) {
        const started = performance.now();
        // Two writes, Nagle on: the body leaves only once the head is acknowledged.
        connection.socket.write(head());
        connection.socket.write(body);
        const answer = await connection.answer();
        times.push(performance.now() - started);
        assert.equal(answer.status, 200, answer.body);
        assert.equal(JSON.parse(answer.body).errors[0].code, 'NOT_FOUND', 'the body reached the route whole');
      }
      // Past the kernel's quick-ACK start of a connection, a stall shows on every request.
      const steady = times.slice(15).sort((a, b) => a - b);
      const median = steady[Math.floor(steady.length / 2)] ?? Infinity;
      assert.ok(median < 25, `median round trip ${median.toFixed(1)} ms on a kept-alive connection (a delayed-ACK stall is ≥ 40 ms)`);
    } finally {
      connection.socket.destroy();
    }
  });

  it('sends no interim answer when the body came with the head, nor for a request without a body', async () => {
    const connection = await RawConnection.open(url, true);
    try {
      connection.socket.write(head() + body);
      const withBody = await connection.answer();
      assert.equal(withBody.status, 200);
      assert.deepEqual(withBody.interim, []);
      connection.socket.write(`GET /healthz HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
      const get = await connection.answer();
      assert.equal(get.status, 200);
      assert.deepEqual(get.interim, []);
    } finally {
      connection.socket.destroy();
    }
  });

  it("sends no interim answer to clients that do not accept one (undici's fetch fails on it)", async () => {
    const connection = await RawConnection.open(url, false);
    try {
      connection.socket.write(head().replace(/User-Agent: [^\r]*/, 'User-Agent: node'));
      await new Promise((resolve) => setTimeout(resolve, 5));
      connection.socket.write(body);
      const answer = await connection.answer();
      assert.equal(answer.status, 200, answer.body);
      assert.deepEqual(answer.interim, []);
    } finally {
      connection.socket.destroy();
    }
  });

  it('a small multipart upload through fetch (undici) still works', async () => {
    const form = new FormData();
    form.set('file', new Blob([Buffer.alloc(3000, 7)]), 'f.bin');
    for (let i = 0; i < 20; i++) {
      const response = await fetch(`${url.origin}/api/v1/sandbox/status:batchGet`, { method: 'POST', headers: { authorization: `Bearer ${t.adminKey}` }, body: form });
      await response.arrayBuffer();
      assert.ok(response.status >= 400 && response.status < 500, `status ${response.status}`);
    }
  });
});

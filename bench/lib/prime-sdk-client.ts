import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { BENCH_KEY } from './corral-client.js';

/**
 * A benchmark client that behaves as the Prime Python SDK (prime-sandboxes 0.2.39, sync
 * `SandboxClient`) does, so the bench measures what its users see:
 *
 * - control plane: one kept-alive connection pool (the SDK's `APIClient` holds one `httpx.Client`:
 *   up to 20 idle connections kept), its headers (`User-Agent: prime-sandboxes/…`, `Content-Type:
 *   application/json`, Bearer key), each request's head and body in two writes without TCP_NODELAY
 *   (httpcore's sync backend);
 * - `create`: `POST /sandbox` with the SDK's defaults and a fresh `idempotency_key`;
 * - `waitForCreation`: the SDK's status coalescer (asks are collected for 25 ms, then one
 *   `status:batchGet` of ≤ 100 ids), asked at once; while not RUNNING it sleeps
 *   `min(1.0 · 1.5^n, 10) s ± 25 %` between asks; once RUNNING, the reachability exec
 *   `echo 'sandbox ready'` (timeout 10);
 * - `executeCommand`: `POST /sandbox/{id}/auth` once per sandbox (cached), `GET /sandbox/{id}`
 *   once for `is_vm` (cached), then the exec on a **new TCP connection per call** (`with
 *   httpx.Client(timeout=…) as client: client.post(…)`), with httpx's request bytes: its header
 *   order, `Connection: keep-alive`, compact JSON body, headers and body in two writes, TCP_NODELAY
 *   (httpcore sets it), and the connection closed after the answer.
 */
export class PrimeSdkClient {
  private readonly auth = new Map<string, Promise<{ token: string; gateway_url: string; user_ns: string; job_id: string }>>();
  private readonly vm = new Map<string, Promise<boolean>>();
  private readonly pending = new Map<string, Array<{ resolve: (s: StatusSnapshot) => void; reject: (e: Error) => void }>>();
  private dispatching = false;
  /** Status requests sent, for the report. */
  statusRequests = 0;

  private readonly pool: HttpxStylePool;

  constructor(
    base: string,
    /**
     * `holdHeaders` go with the create and the status asks (`x-corral-create-wait: 0` = the old,
     * unheld answers); `resources` replace the create's `cpu_cores`/`memory_gb` (1 and 1).
     */
    private readonly options: { holdHeaders?: Record<string, string>; resources?: { cpu_cores: number; memory_gb: number } } = {},
  ) {
    this.pool = new HttpxStylePool(new URL(base));
  }

  private async call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const answer = await this.pool.request(method, `/api/v1${path}`, {
      'Content-Type': 'application/json',
      Authorization: `Bearer ${BENCH_KEY}`,
      ...headers,
    }, body === undefined ? undefined : JSON.stringify(body));
    if (answer.status < 200 || answer.status >= 300) throw new Error(`${method} ${path}: HTTP ${answer.status} ${answer.body}`);
    return JSON.parse(answer.body) as T;
  }

  /** `SandboxClient.create(CreateSandboxRequest(name, docker_image))`. Returns the id and the status it answered. */
  async create(image: string): Promise<{ id: string; status: string }> {
    const body = {
      name: 'bench',
      docker_image: image,
      start_command: 'tail -f /dev/null',
      cpu_cores: 1,
      memory_gb: 1,
      disk_size_gb: 5,
      gpu_count: 0,
      network_access: true,
      timeout_minutes: 60,
      labels: [],
      idempotency_key: randomUUID().replace(/-/g, ''),
      ...this.options.resources,
    };
    return this.call<{ id: string; status: string }>('POST', '/sandbox', body, this.options.holdHeaders ?? {});
  }

  /** The SDK's `_SyncRequestBatcher`: the first asker waits 25 ms, then every pending id goes out in batches of 100. */
  private status(id: string): Promise<StatusSnapshot> {
    return new Promise((resolve, reject) => {
      const waiters = this.pending.get(id) ?? [];
      waiters.push({ resolve, reject });
      this.pending.set(id, waiters);
      if (!this.dispatching) {
        this.dispatching = true;
        setTimeout(() => void this.dispatch(), STATUS_BATCH_WINDOW_MS);
      }
    });
  }

  private async dispatch(): Promise<void> {
    try {
      while (this.pending.size > 0) {
        const ids = [...this.pending.keys()].slice(0, 100);
        const waiters = ids.map((id) => [id, this.pending.get(id) ?? []] as const);
        for (const id of ids) this.pending.delete(id);
        try {
          this.statusRequests++;
          const answer = await this.call<{ statuses: StatusSnapshot[] }>('POST', '/sandbox/status:batchGet', { sandbox_ids: ids }, this.options.holdHeaders ?? {});
          const byId = new Map(answer.statuses.map((s) => [s.sandbox_id, s]));
          for (const [id, list] of waiters) {
            const snapshot = byId.get(id);
            for (const w of list) {
              if (snapshot) w.resolve(snapshot);
              else w.reject(new Error(`batch omitted ${id}`));
            }
          }
        } catch (error) {
          for (const [, list] of waiters) for (const w of list) w.reject(error as Error);
        }
      }
    } finally {
      this.dispatching = false;
    }
  }

  /** `SandboxClient.wait_for_creation(id)` with the SDK's schedule (max_attempts 60 ⇒ 115 s budget). */
  async waitForCreation(id: string): Promise<void> {
    const deadline = performance.now() + 115_000;
    let pollIndex = 0;
    while (performance.now() < deadline) {
      const snapshot = await this.status(id);
      if (snapshot.status === 'RUNNING') {
        await this.executeCommand(id, "echo 'sandbox ready'", 10);
        return;
      }
      if (['ERROR', 'TERMINATED', 'TIMEOUT'].includes(snapshot.status)) throw new Error(`${id} ${snapshot.status}: ${snapshot.error_message}`);
      const remaining = deadline - performance.now();
      await sleep(Math.min(creationPollDelayMs(pollIndex), remaining));
      pollIndex++;
    }
    throw new Error(`${id}: timeout during sandbox creation`);
  }

  private authFor(id: string): Promise<{ token: string; gateway_url: string; user_ns: string; job_id: string }> {
    let auth = this.auth.get(id);
    if (!auth) {
      auth = this.call('POST', `/sandbox/${id}/auth`);
      this.auth.set(id, auth);
    }
    return auth;
  }

  private isVm(id: string): Promise<boolean> {
    let vm = this.vm.get(id);
    if (!vm) {
      vm = this.call<{ vm?: boolean }>('GET', `/sandbox/${id}`).then((s) => s.vm === true);
      this.vm.set(id, vm);
    }
    return vm;
  }

  /** `SandboxClient.execute_command(id, command)` on a container sandbox; returns the exit code. */
  async executeCommand(id: string, command: string, timeout = 300): Promise<number> {
    const auth = await this.authFor(id);
    if (await this.isVm(id)) throw new Error('the bench measures container sandboxes');
    const url = new URL(`${auth.gateway_url.replace(/\/+$/, '')}/${auth.user_ns}/${auth.job_id}/exec`);
    const body = JSON.stringify({ command, working_dir: null, env: {}, sandbox_id: id, timeout });
    const answer = await httpxStylePost(url, auth.token, body);
    if (answer.status !== 200) throw new Error(`exec in ${id}: HTTP ${answer.status} ${answer.body}`);
    return (JSON.parse(answer.body) as { exit_code: number }).exit_code;
  }

  async delete(id: string): Promise<void> {
    await this.call('DELETE', `/sandbox/${id}`);
    this.auth.delete(id);
    this.vm.delete(id);
  }
}

/** One `statuses[]` item of `status:batchGet`. */
interface StatusSnapshot {
  sandbox_id: string;
  status: string;
  error_message: string | null;
}

/** `STATUS_BATCH_WINDOW_SECONDS` of the SDK. */
export const STATUS_BATCH_WINDOW_MS = 25;

/** The SDK's `_creation_poll_delay(n)`: `min(1.0 · 1.5^n, 10)` s with ±25 % uniform jitter, in ms. */
export function creationPollDelayMs(pollIndex: number): number {
  const delay = Math.min(1.0 * 1.5 ** pollIndex, 10);
  const jitter = delay * 0.25;
  return Math.max(0, delay + (Math.random() * 2 - 1) * jitter) * 1000;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The request head httpx writes: its header order, then the caller's headers, then the length. */
function httpxHead(method: string, url: URL, path: string, headers: Record<string, string>, body: string | undefined): string {
  const lines = [
    `${method} ${path} HTTP/1.1`,
    `Host: ${url.host}`,
    'Accept: */*',
    'Accept-Encoding: gzip, deflate',
    'Connection: keep-alive',
    `User-Agent: ${headers['User-Agent'] ?? 'python-httpx/0.28.1'}`,
    ...Object.entries(headers)
      .filter(([name]) => name !== 'User-Agent')
      .map(([name, value]) => `${name}: ${value}`),
    ...(body !== undefined ? [`Content-Length: ${Buffer.byteLength(body)}`] : method === 'POST' ? ['Content-Length: 0'] : []),
  ];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** One HTTP/1.1 connection that sends a request as two writes and reads one answer at a time (1xx skipped). */
class HttpxStyleConnection {
  private buffered = Buffer.alloc(0);
  private waiter: { wake: () => void; fail: (e: Error) => void } | undefined;
  private failure: Error | undefined;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.waiter?.wake();
    });
    const fail = (error: Error): void => {
      this.failure ??= error;
      this.waiter?.fail(this.failure);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  /** Connects without TCP_NODELAY, as httpcore's sync backend does. */
  static async open(url: URL): Promise<HttpxStyleConnection> {
    const socket = connect({ host: url.hostname, port: Number(url.port || 80), noDelay: false });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new HttpxStyleConnection(socket);
  }

  get usable(): boolean {
    return this.failure === undefined && !this.socket.destroyed;
  }

  private more(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.waiter = {
        wake: () => {
          this.waiter = undefined;
          resolve();
        },
        fail: (e) => {
          this.waiter = undefined;
          reject(e);
        },
      };
    });
  }

  async exchange(head: string, body: string | undefined): Promise<{ status: number; body: string; close: boolean }> {
    this.socket.write(head);
    if (body !== undefined) this.socket.write(body);
    for (;;) {
      const end = this.buffered.indexOf('\r\n\r\n');
      if (end < 0) {
        await this.more();
        continue;
      }
      const headText = this.buffered.subarray(0, end).toString('latin1');
      const status = Number(headText.split(' ')[1]);
      if (status < 200) {
        this.buffered = this.buffered.subarray(end + 4);
        continue;
      }
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headText)?.[1] ?? NaN);
      if (!Number.isFinite(length)) throw new Error(`no Content-Length in ${headText}`);
      while (this.buffered.length < end + 4 + length) await this.more();
      const text = this.buffered.subarray(end + 4, end + 4 + length).toString('utf8');
      this.buffered = this.buffered.subarray(end + 4 + length);
      return { status, body: text, close: /\r\nconnection:\s*close/i.test(headText) };
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** httpx's connection pool as the SDK's `APIClient` uses it: kept-alive connections, at most 20 idle. */
class HttpxStylePool {
  private readonly idle: HttpxStyleConnection[] = [];

  constructor(private readonly base: URL) {}

  async request(method: string, path: string, headers: Record<string, string>, body: string | undefined): Promise<{ status: number; body: string }> {
    const head = httpxHead(method, this.base, path, { 'User-Agent': 'prime-sandboxes/0.2.39 python/3.11.7', ...headers }, body);
    for (;;) {
      let reused = false;
      let connection: HttpxStyleConnection | undefined;
      while ((connection = this.idle.pop()) && !connection.usable) connection.close();
      if (connection) reused = true;
      else connection = await HttpxStyleConnection.open(this.base);
      try {
        const answer = await connection.exchange(head, body);
        if (!answer.close && this.idle.length < 20) this.idle.push(connection);
        else connection.close();
        return answer;
      } catch (error) {
        connection.close();
        // A kept-alive connection the server closed meanwhile: httpcore retries on a new one.
        if (!reused) throw error;
      }
    }
  }
}

/**
 * One POST exactly as `with httpx.Client(timeout=…) as c: c.post(url, json=…, headers={'Authorization': …})`
 * puts it on the wire: a new connection (no TCP_NODELAY), the request head and the body as two
 * writes, and the connection closed once the answer is read.
 */
export async function httpxStylePost(url: URL, token: string, body: string): Promise<{ status: number; body: string }> {
  const connection = await HttpxStyleConnection.open(url);
  try {
    const answer = await connection.exchange(httpxHead('POST', url, `${url.pathname}${url.search}`, { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body), body);
    return { status: answer.status, body: answer.body };
  } finally {
    connection.close();
  }
}

/** The bench's admin key; servers started by bench/lib/serve.ts bootstrap it. */
export const BENCH_KEY = 'corral_bench_admin_key_0000000000000000000000000';

/** A minimal Corral client for benchmarks: the calls the Prime SDK makes, nothing else. */
export class BenchClient {
  private readonly waiting = new Map<string, { resolve: () => void; reject: (e: Error) => void; deadline: number }>();
  private polling = false;

  constructor(private readonly base: string) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.base}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${BENCH_KEY}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${text}`);
    return JSON.parse(text) as T;
  }

  async create(image: string, extra: Record<string, unknown> = {}): Promise<string> {
    return (await this.call<{ id: string }>('POST', '/sandbox', { name: 'bench', docker_image: image, ...extra })).id;
  }

  /** Polls `status:batchGet` every `intervalMs` until the sandbox is RUNNING; throws if it ends. */
  async waitRunning(id: string, intervalMs = 5, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { statuses } = await this.call<{ statuses: Array<{ status: string; error_message: string | null }> }>('POST', '/sandbox/status:batchGet', {
        sandbox_ids: [id],
      });
      const status = statuses[0];
      if (status?.status === 'RUNNING') return;
      if (status && ['ERROR', 'TERMINATED', 'TIMEOUT'].includes(status.status)) throw new Error(`${id} ${status.status}: ${status.error_message}`);
      if (Date.now() > deadline) throw new Error(`${id} not RUNNING after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  /**
   * Like {@link waitRunning}, but every sandbox waited on this way shares one `status:batchGet`
   * of up to 100 ids per `intervalMs`, as `@corral/sdk`'s batched waits (and a Prime user waiting
   * on many sandboxes) do; a burst of creates then costs one status request per interval.
   */
  waitRunningBatched(id: string, intervalMs = 20, timeoutMs = 120_000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, deadline: Date.now() + timeoutMs });
      if (!this.polling) void this.pollBatches(intervalMs);
    });
  }

  private async pollBatches(intervalMs: number): Promise<void> {
    this.polling = true;
    try {
      while (this.waiting.size > 0) {
        await new Promise((r) => setTimeout(r, intervalMs));
        const ids = [...this.waiting.keys()];
        for (let i = 0; i < ids.length; i += 100) {
          const { statuses } = await this.call<{ statuses: Array<{ sandbox_id: string; status: string; error_message: string | null }> }>('POST', '/sandbox/status:batchGet', {
            sandbox_ids: ids.slice(i, i + 100),
          });
          for (const status of statuses) {
            const waiter = this.waiting.get(status.sandbox_id);
            if (!waiter) continue;
            if (status.status === 'RUNNING') {
              this.waiting.delete(status.sandbox_id);
              waiter.resolve();
            } else if (['ERROR', 'TERMINATED', 'TIMEOUT'].includes(status.status) || Date.now() > waiter.deadline) {
              this.waiting.delete(status.sandbox_id);
              waiter.reject(new Error(`${status.sandbox_id} ${status.status}: ${status.error_message}`));
            }
          }
        }
      }
    } catch (error) {
      for (const [id, waiter] of this.waiting) {
        this.waiting.delete(id);
        waiter.reject(error as Error);
      }
    } finally {
      this.polling = false;
    }
  }

  /** `POST /auth` then the gateway exec, as the Prime SDK does; returns the exit code. */
  async exec(id: string, command: string): Promise<number> {
    const auth = await this.call<{ token: string; gateway_url: string; user_ns: string; job_id: string }>('POST', `/sandbox/${id}/auth`);
    const response = await fetch(`${auth.gateway_url}/${auth.user_ns}/${auth.job_id}/exec`, {
      method: 'POST',
      headers: { authorization: `Bearer ${auth.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ command, sandbox_id: id, timeout: 60 }),
    });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`exec in ${id}: HTTP ${response.status} ${text}`);
    return (JSON.parse(text) as { exit_code: number }).exit_code;
  }

  private readonly tokens = new Map<string, Promise<{ token: string; base: string }>>();

  /** The sandbox's gateway token and base URL, asked once and kept (as the Prime SDK's auth cache does). */
  private gateway(id: string): Promise<{ token: string; base: string }> {
    let entry = this.tokens.get(id);
    if (!entry) {
      entry = this.call<{ token: string; gateway_url: string; user_ns: string; job_id: string }>('POST', `/sandbox/${id}/auth`).then((a) => ({
        token: a.token,
        base: `${a.gateway_url}/${a.user_ns}/${a.job_id}`,
      }));
      entry.catch(() => this.tokens.delete(id));
      this.tokens.set(id, entry);
    }
    return entry;
  }

  /**
   * A gateway exec with a cached token, a command `timeout` (seconds) and the client's own deadline
   * (`clientTimeoutMs`, as the SDK's HTTP timeout); resolves with the exit code and stdout.
   */
  async execTimed(id: string, command: string, timeoutSeconds: number, clientTimeoutMs: number): Promise<{ exitCode: number; stdout: string }> {
    const { token, base } = await this.gateway(id);
    const response = await fetch(`${base}/exec`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ command, sandbox_id: id, timeout: timeoutSeconds }),
      signal: AbortSignal.timeout(clientTimeoutMs),
    });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`exec in ${id}: HTTP ${response.status} ${text.slice(0, 200)}`);
    const body = JSON.parse(text) as { exit_code: number; stdout: string };
    return { exitCode: body.exit_code, stdout: body.stdout };
  }

  /** Uploads `data` to `path` in the sandbox (multipart, as the Prime SDK's `upload_file`). */
  async upload(id: string, path: string, data: Uint8Array): Promise<void> {
    const { token, base } = await this.gateway(id);
    const form = new FormData();
    form.append('file', new Blob([data]), 'bundle');
    const response = await fetch(`${base}/upload?path=${encodeURIComponent(path)}`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
    if (!response.ok) throw new Error(`upload to ${id}: HTTP ${response.status} ${(await response.text()).slice(0, 200)}`);
  }

  /** Milliseconds one `GET` of `path` (under the server, not /api/v1) takes; throws on a non-2xx answer. */
  async timeGet(path: string): Promise<number> {
    const started = performance.now();
    const response = await fetch(`${this.base}${path}`, { headers: { authorization: `Bearer ${BENCH_KEY}` } });
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
    return performance.now() - started;
  }

  /** The sandbox as `GET /sandbox/{id}` returns it. */
  async get(id: string): Promise<Record<string, unknown>> {
    return this.call<Record<string, unknown>>('GET', `/sandbox/${id}`);
  }

  async delete(id: string): Promise<void> {
    this.tokens.delete(id);
    await this.call('DELETE', `/sandbox/${id}`);
  }
}

import type { Logger } from 'pino';
import type { TestContext } from 'node:test';
import { TEST_IMAGE, dockerMissing, needNothingMissing } from '../testing/runtime-available.js';
import { type ListeningTestServer, startListeningServer } from '../testing/test-server.js';
import type { CorralConfig } from '../config.js';

export { TEST_IMAGE, dockerMissing } from '../testing/runtime-available.js';

/** Skips the test when Docker is missing, except on CI (`CI=true`), where it fails. Returns true when it should go on. */
export function needDocker(t: TestContext, image = TEST_IMAGE): boolean {
  return needNothingMissing(t, dockerMissing(image));
}

/** A listening Docker-backed test server. */
export type GatewayTestServer = ListeningTestServer;

/** Starts a Docker-backed server on a loopback port with a unique instance id. */
export function startGatewayServer(overrides: Partial<CorralConfig> = {}, options: { logger?: Logger } = {}): Promise<GatewayTestServer> {
  return startListeningServer('gwtest', overrides, options);
}

/** A running sandbox and what the gateway needs to reach it. */
export interface GatewaySandbox {
  id: string;
  token: string;
  userNs: string;
  /** `<gateway_url>/<user_ns>/<job_id>` */
  base: string;
}

/** Creates a sandbox through the API (as the owner of `key`, the admin by default), waits until it is RUNNING and fetches a gateway token. */
export async function createSandbox(server: GatewayTestServer, body: Record<string, unknown> = {}, key = server.t.adminKey): Promise<GatewaySandbox> {
  const created = await server.t.request('POST', '/api/v1/sandbox', {
    body: { name: 'gw', docker_image: TEST_IMAGE, start_command: 'tail -f /dev/null', cpu_cores: 1, memory_gb: 1, disk_size_gb: 1, ...body },
    key,
  });
  if (created.statusCode !== 201) throw new Error(`create: ${created.statusCode} ${created.body}`);
  const { id } = created.json<{ id: string }>();
  await waitForStatus(server, id, 'RUNNING', 60_000, key);
  const auth = await fetch(`${server.url}/api/v1/sandbox/${id}/auth`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
  if (auth.status !== 200) throw new Error(`auth: ${auth.status} ${await auth.text()}`);
  const a = (await auth.json()) as { token: string; gateway_url: string; user_ns: string; job_id: string };
  return { id, token: a.token, userNs: a.user_ns, base: `${a.gateway_url}/${a.user_ns}/${a.job_id}` };
}

/** Polls `GET /sandbox/{id}` (with `key`, the admin's by default) until it has `status` (60 s at most). */
export async function waitForStatus(server: GatewayTestServer, id: string, status: string, timeoutMs = 60_000, key = server.t.adminKey): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await server.t.request('GET', `/api/v1/sandbox/${id}`, { key });
    const s = res.json<{ status: string; errorMessage?: string }>();
    if (s.status === status) return;
    if (['ERROR', 'TERMINATED', 'TIMEOUT'].includes(s.status) && status !== s.status) {
      throw new Error(`sandbox ${id} is ${s.status}: ${s.errorMessage ?? ''}`);
    }
    if (Date.now() > deadline) throw new Error(`sandbox ${id} still ${s.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The result of a gateway call: status and parsed JSON body. */
export interface JsonResponse<T = Record<string, unknown>> {
  status: number;
  body: T;
}

/** `POST <base>/exec` with the sandbox's token. */
export async function execCall<T = { stdout: string; stderr: string; exit_code: number }>(
  sb: GatewaySandbox,
  body: Record<string, unknown> | string,
  token: string | null = sb.token,
): Promise<JsonResponse<T>> {
  const res = await fetch(`${sb.base}/exec`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify({ sandbox_id: sb.id, working_dir: null, env: {}, timeout: 30, ...body }),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`exec answered ${res.status} with non-JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, body: parsed as T };
}

/** `GET <base>/read-file?…` with the sandbox's token. */
export async function readFileCall(sb: GatewaySandbox, query: Record<string, string>): Promise<JsonResponse> {
  const res = await fetch(`${sb.base}/read-file?${new URLSearchParams(query)}`, { headers: { authorization: `Bearer ${sb.token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

import type {
  AuthorizeSandboxResponse,
  BatchGetSandboxStatusResponse,
  BulkDeleteSandboxesRequest,
  BulkDeleteSandboxesResponse,
  CloseSshSessionResponse,
  CreateCheckpointRequest,
  CreateCheckpointResponse,
  CreateSandboxRequest,
  CreateSandboxResponse,
  CreateSshSessionRequest,
  CreateSshSessionResponse,
  DeleteCheckpointResponse,
  DeleteSandboxResponse,
  ExposePortRequest,
  ExposePortResponse,
  ForkCheckpointRequest,
  ForkCheckpointResponse,
  ForkSandboxRequest,
  ForkSandboxResponse,
  GetCheckpointResponse,
  GetEgressLogQuery,
  GetEgressLogResponse,
  GetEgressPolicyResponse,
  GetSandboxErrorContextResponse,
  GetSandboxLogsResponse,
  GetSandboxResponse,
  ListAllExposedPortsResponse,
  ListCheckpointsQuery,
  ListCheckpointsResponse,
  ListExposedPortsResponse,
  ListSandboxesQuery,
  ListSandboxesResponse,
  ListSandboxCheckpointsResponse,
  PauseSandboxResponse,
  ResumeSandboxResponse,
  SetEgressPolicyRequest,
  SetEgressPolicyResponse,
  UnexposePortResponse,
  UpdateSandboxRequest,
  UpdateSandboxResponse,
} from '../generated/api.js';
import type { HttpTransport } from '../http.js';

const seg = encodeURIComponent;

/**
 * The sandbox endpoints of the control plane, one method per route, with the server's own
 * (snake_case) request types. Most code uses the {@link Sandbox} handle instead.
 *
 * @example
 * ```ts
 * const page = await client.sandboxes.list({ labels: ['ci'], is_active: true });
 * console.log(page.total, page.sandboxes.map((s) => s.id));
 * ```
 */
export class SandboxesApi {
  constructor(private readonly http: HttpTransport) {}

  /**
   * `POST /sandbox`. Retried on transient failures only when `idempotency_key` is set. The server
   * holds its answer while the sandbox starts; `holdMs` shortens that hold (0: answer at once).
   */
  create(body: CreateSandboxRequest, signal?: AbortSignal, holdMs?: number): Promise<CreateSandboxResponse> {
    return this.http.call('POST', '/sandbox', {
      body,
      idempotent: Boolean(body.idempotency_key),
      operation: 'CreateSandbox',
      signal,
      ...(holdMs !== undefined ? { headers: { 'x-corral-create-wait': String(Math.max(0, Math.round(holdMs))) } } : {}),
    });
  }

  /** `GET /sandbox`: a page of sandboxes, newest first. */
  list(query: ListSandboxesQuery = {}): Promise<ListSandboxesResponse> {
    return this.http.call('GET', '/sandbox', { query, operation: 'ListSandboxes' });
  }

  /** `GET /sandbox/{id}`. */
  get(id: string): Promise<GetSandboxResponse> {
    return this.http.call('GET', `/sandbox/${seg(id)}`, { operation: 'GetSandbox' });
  }

  /** `PATCH /sandbox/{id}`: timeout, idle timeout, labels. */
  update(id: string, body: UpdateSandboxRequest): Promise<UpdateSandboxResponse> {
    return this.http.call('PATCH', `/sandbox/${seg(id)}`, { body, idempotent: true, operation: 'UpdateSandbox' });
  }

  /** `DELETE /sandbox/{id}`. */
  delete(id: string): Promise<DeleteSandboxResponse> {
    return this.http.call('DELETE', `/sandbox/${seg(id)}`, { operation: 'DeleteSandbox' });
  }

  /** `DELETE /sandbox` with a body: by ids (≤500) and/or labels (all must match). */
  bulkDelete(body: BulkDeleteSandboxesRequest): Promise<BulkDeleteSandboxesResponse> {
    return this.http.call('DELETE', '/sandbox', { body, operation: 'BulkDeleteSandboxes' });
  }

  /** `POST /sandbox/status:batchGet` for up to 100 ids. Prefer `client.statuses.get(id)`, which batches for you. */
  batchStatus(ids: string[]): Promise<BatchGetSandboxStatusResponse> {
    return this.http.call('POST', '/sandbox/status:batchGet', { body: { sandbox_ids: ids }, idempotent: true, operation: 'BatchGetSandboxStatus' });
  }

  /** `GET /sandbox/{id}/logs`: the start command's output. */
  logs(id: string): Promise<GetSandboxLogsResponse> {
    return this.http.call('GET', `/sandbox/${seg(id)}/logs`, { operation: 'GetSandboxLogs' });
  }

  /** `GET /sandbox/{id}/error-context`: status, errorType and errorMessage. */
  errorContext(id: string): Promise<GetSandboxErrorContextResponse> {
    return this.http.call('GET', `/sandbox/${seg(id)}/error-context`, { operation: 'GetSandboxErrorContext' });
  }

  /** `POST /sandbox/{id}/auth`: a gateway token. Prefer the client's token cache (`client.gateway`). */
  auth(id: string): Promise<AuthorizeSandboxResponse> {
    return this.http.call('POST', `/sandbox/${seg(id)}/auth`, { idempotent: true, operation: 'AuthorizeSandbox' });
  }

  /** `GET /sandbox/{id}/egress-policy`: the policy, its generation and whether it is applied. */
  getEgressPolicy(id: string): Promise<GetEgressPolicyResponse> {
    return this.http.call('GET', `/sandbox/${seg(id)}/egress-policy`, { operation: 'GetEgressPolicy' });
  }

  /** `PUT /sandbox/{id}/egress-policy`: replaces the policy; a running sandbox follows it within a second. */
  setEgressPolicy(id: string, body: SetEgressPolicyRequest): Promise<SetEgressPolicyResponse> {
    return this.http.call('PUT', `/sandbox/${seg(id)}/egress-policy`, { body, idempotent: true, operation: 'SetEgressPolicy' });
  }

  /** `GET /sandbox/{id}/egress-log` (Corral's own): recent DNS answers and connection attempts, oldest first. */
  egressLog(id: string, query: GetEgressLogQuery = {}): Promise<GetEgressLogResponse> {
    return this.http.call('GET', `/sandbox/${seg(id)}/egress-log`, { query, operation: 'GetEgressLog' });
  }

  /**
   * `POST /sandbox/{id}/pause` (Corral's own): freezes every process (memory kept; timeout and idle
   * timers stop). Idempotent, so retried on transient failures.
   */
  pause(id: string): Promise<PauseSandboxResponse> {
    return this.http.call('POST', `/sandbox/${seg(id)}/pause`, { idempotent: true, operation: 'PauseSandbox' });
  }

  /** `POST /sandbox/{id}/resume` (Corral's own): the processes continue where they stopped. Idempotent. */
  resume(id: string): Promise<ResumeSandboxResponse> {
    return this.http.call('POST', `/sandbox/${seg(id)}/resume`, { idempotent: true, operation: 'ResumeSandbox' });
  }

  /**
   * `POST /sandbox/{id}/checkpoints` (Prime's `checkpoint`): starts a checkpoint of a RUNNING or
   * PAUSED sandbox and answers it PENDING; `memory: true` (Corral's own) captures its processes too.
   * Not retried (a retry would take a second checkpoint).
   */
  checkpoint(id: string, body: CreateCheckpointRequest = null): Promise<CreateCheckpointResponse> {
    return this.http.call('POST', `/sandbox/${seg(id)}/checkpoints`, { ...(body !== null ? { body } : {}), operation: 'CreateCheckpoint' });
  }

  /** `GET /sandbox/{id}/checkpoints[?checkpoint_id=]` (Prime's `list_checkpoints`): the sandbox's checkpoints, newest first. */
  listCheckpoints(id: string, checkpointId?: string): Promise<ListSandboxCheckpointsResponse> {
    return this.http.call('GET', `/sandbox/${seg(id)}/checkpoints`, { query: checkpointId !== undefined ? { checkpoint_id: checkpointId } : {}, operation: 'ListSandboxCheckpoints' });
  }

  /** `GET /sandbox/checkpoints` (Corral's own): every checkpoint you may see, newest first, a page at a time. */
  listAllCheckpoints(query: ListCheckpointsQuery = {}): Promise<ListCheckpointsResponse> {
    return this.http.call('GET', '/sandbox/checkpoints', { query, operation: 'ListCheckpoints' });
  }

  /** `GET /sandbox/checkpoints/{checkpoint_id}` (Prime's `get_checkpoint`). */
  getCheckpoint(checkpointId: string): Promise<GetCheckpointResponse> {
    return this.http.call('GET', `/sandbox/checkpoints/${seg(checkpointId)}`, { operation: 'GetCheckpoint' });
  }

  /** `DELETE /sandbox/checkpoints/{checkpoint_id}` (Corral's own): deletes it and its data. */
  deleteCheckpoint(checkpointId: string): Promise<DeleteCheckpointResponse> {
    return this.http.call('DELETE', `/sandbox/checkpoints/${seg(checkpointId)}`, { operation: 'DeleteCheckpoint' });
  }

  /** `POST /sandbox/checkpoints/{checkpoint_id}/fork` (Corral's own): `count` sandboxes restored from a DURABLE checkpoint. */
  forkCheckpoint(checkpointId: string, body: ForkCheckpointRequest): Promise<ForkCheckpointResponse> {
    return this.http.call('POST', `/sandbox/checkpoints/${seg(checkpointId)}/fork`, { body, idempotent: Boolean(body.idempotency_key), operation: 'ForkCheckpoint' });
  }

  /** `POST /sandbox/{id}/fork` (Corral's own): checkpoints the sandbox, waits until it is stored, then forks it `count` times. */
  fork(id: string, body: ForkSandboxRequest): Promise<ForkSandboxResponse> {
    return this.http.call('POST', `/sandbox/${seg(id)}/fork`, { body, operation: 'ForkSandbox' });
  }

  /** `POST /sandbox/{id}/expose`: an HTTP URL or a TCP endpoint for a port in the sandbox. */
  expose(id: string, body: ExposePortRequest): Promise<ExposePortResponse> {
    return this.http.call('POST', `/sandbox/${seg(id)}/expose`, { body, operation: 'ExposePort' });
  }

  /** `GET /sandbox/{id}/expose`. */
  listExposedPorts(id: string): Promise<ListExposedPortsResponse> {
    return this.http.call('GET', `/sandbox/${seg(id)}/expose`, { operation: 'ListExposedPorts' });
  }

  /** `DELETE /sandbox/{id}/expose/{exposureId}`. */
  unexpose(id: string, exposureId: string): Promise<UnexposePortResponse> {
    return this.http.call('DELETE', `/sandbox/${seg(id)}/expose/${seg(exposureId)}`, { operation: 'UnexposePort' });
  }

  /** `GET /sandbox/expose/all`: exposures across your sandboxes. */
  listAllExposedPorts(): Promise<ListAllExposedPortsResponse> {
    return this.http.call('GET', '/sandbox/expose/all', { operation: 'ListAllExposedPorts' });
  }

  /** `POST /sandbox/{id}/ssh-session`: a session on Corral's SSH server; authorize a key through the gateway. */
  createSshSession(id: string, body: CreateSshSessionRequest = {}): Promise<CreateSshSessionResponse> {
    return this.http.call('POST', `/sandbox/${seg(id)}/ssh-session`, { body: body ?? {}, operation: 'CreateSshSession' });
  }

  /** `DELETE /sandbox/{id}/ssh-session/{sessionId}`. */
  closeSshSession(id: string, sessionId: string): Promise<CloseSshSessionResponse> {
    return this.http.call('DELETE', `/sandbox/${seg(id)}/ssh-session/${seg(sessionId)}`, { operation: 'CloseSshSession' });
  }
}

import type {
  BulkDeleteTunnelsResponse,
  CreateTunnelRequest,
  CreateTunnelResponse,
  DeleteTunnelResponse,
  GetTunnelResponse,
  ListTunnelsQuery,
  ListTunnelsResponse,
} from '../generated/api.js';
import type { HttpTransport } from '../http.js';

const seg = encodeURIComponent;

/**
 * Reverse tunnels (`/tunnel`): create one, then run `corral tunnel start` (or bind with the returned
 * `binding_secret`) to serve a local port at its URL. Unknown ids throw {@link NotFoundError}.
 */
export class TunnelsApi {
  constructor(private readonly http: HttpTransport) {}
  /** `POST /tunnel`. */
  create(body: CreateTunnelRequest = {}): Promise<CreateTunnelResponse> {
    return this.http.call('POST', '/tunnel', { body, operation: 'CreateTunnel' });
  }
  /** `GET /tunnel`. */
  list(query: ListTunnelsQuery = {}): Promise<ListTunnelsResponse> {
    return this.http.call('GET', '/tunnel', { query, operation: 'ListTunnels' });
  }
  /** `GET /tunnel/{id}`. */
  get(tunnelId: string): Promise<GetTunnelResponse> {
    return this.http.call('GET', `/tunnel/${seg(tunnelId)}`, { operation: 'GetTunnel' });
  }
  /** `DELETE /tunnel/{id}`. */
  delete(tunnelId: string): Promise<DeleteTunnelResponse> {
    return this.http.call('DELETE', `/tunnel/${seg(tunnelId)}`, { operation: 'DeleteTunnel' });
  }
  /** `DELETE /tunnel` with `{tunnel_ids}`. */
  bulkDelete(tunnelIds: string[]): Promise<BulkDeleteTunnelsResponse> {
    return this.http.call('DELETE', '/tunnel', { body: { tunnel_ids: tunnelIds }, operation: 'BulkDeleteTunnels' });
  }
}

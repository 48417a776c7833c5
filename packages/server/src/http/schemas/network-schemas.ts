import Type, { type Static } from 'typebox';
import { Nullable, StringEnum } from './common.js';

/** `ExposePortRequest`. */
export const ExposePortBody = Type.Object({
  port: Type.Integer({ minimum: 22, maximum: 9000 }),
  name: Type.Optional(Nullable(Type.String({ maxLength: 50 }))),
  protocol: Type.Optional(StringEnum(['HTTP', 'TCP'] as const, { default: 'HTTP' })),
  /** Corral: `token` makes an HTTP exposure private; requests then need the returned `access_token`. */
  auth: Type.Optional(StringEnum(['none', 'token'] as const, { default: 'none' })),
});
export type ExposePortBody = Static<typeof ExposePortBody>;

/** `ExposePortResponse`. */
export const ExposePortResponse = Type.Object({
  exposure_id: Type.String(),
  sandbox_id: Type.String(),
  port: Type.Integer(),
  name: Nullable(Type.String()),
  protocol: Type.String(),
  url: Type.String(),
  tls_socket: Type.String(),
  external_port: Type.Optional(Nullable(Type.Integer())),
  external_endpoint: Type.Optional(Nullable(Type.String())),
  created_at: Type.Optional(Type.String()),
  /** Corral: `token` when the exposure is private. */
  auth: Type.Optional(Type.String()),
  /** Corral: for private exposures, the token requests carry (header `x-corral-exposure-token` or `?corral_token=`); returned only here. */
  access_token: Type.Optional(Type.String()),
});

/** `ExposedPortInfo` list. */
export const ListExposedPortsResponse = Type.Object({
  exposures: Type.Array(
    Type.Object({
      exposure_id: Type.String(),
      sandbox_id: Type.String(),
      port: Type.Integer(),
      name: Nullable(Type.String()),
      protocol: Nullable(Type.String()),
      url: Type.String(),
      tls_socket: Type.String(),
      external_port: Nullable(Type.Integer()),
      external_endpoint: Nullable(Type.String()),
      created_at: Nullable(Type.String()),
      auth: Type.Optional(Type.String()),
    }),
  ),
});

/** `CreateSSHSessionRequest`. */
export const CreateSshSessionBody = Type.Object({
  ttl_seconds: Type.Optional(Nullable(Type.Integer({ minimum: 60, maximum: 3600 }))),
});
export type CreateSshSessionBody = Static<typeof CreateSshSessionBody>;

/** `SSHSessionResponse`. */
export const SshSessionResponse = Type.Object({
  session_id: Type.String(),
  exposure_id: Type.String(),
  sandbox_id: Type.String(),
  host: Type.String(),
  port: Type.Integer(),
  external_endpoint: Type.String(),
  expires_at: Type.String(),
  ttl_seconds: Type.Integer(),
  gateway_url: Type.String(),
  user_ns: Type.String(),
  job_id: Type.String(),
  token: Type.String(),
});

/** `CreateTunnelRequest` (plus the SDK's labels and http_user). */
export const CreateTunnelBody = Type.Object({
  name: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 64 }))),
  local_port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, default: 8765 })),
  teamId: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))),
  labels: Type.Optional(Nullable(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 64 }))),
  http_user: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 64 }))),
});

/** `TunnelResponse`. */
export const TunnelResponse = Type.Object({
  tunnel_id: Type.String(),
  hostname: Type.String(),
  url: Type.String(),
  frp_token: Type.String(),
  binding_secret: Type.String(),
  server_host: Type.String(),
  server_port: Type.Integer(),
  expires_at: Type.String(),
  name: Type.Optional(Nullable(Type.String())),
  local_port: Type.Optional(Type.Integer()),
  labels: Type.Optional(Type.Array(Type.String())),
  http_user: Type.Optional(Nullable(Type.String())),
  /** Returned once, when `http_user` was given. */
  http_password: Type.Optional(Nullable(Type.String())),
  /** Corral: the WebSocket URL a tunnel client binds to (with the API key and `binding_secret`). */
  connect_url: Type.Optional(Type.String()),
});

/** `TunnelStatusResponse`. */
export const TunnelStatusResponse = Type.Object({
  tunnel_id: Type.String(),
  name: Nullable(Type.String()),
  status: StringEnum(['pending', 'connected', 'disconnected', 'expired'] as const),
  hostname: Type.String(),
  url: Type.String(),
  created_at: Type.String(),
  connected_at: Nullable(Type.String()),
  expires_at: Type.String(),
  user_id: Type.String(),
  team_id: Nullable(Type.String()),
  local_port: Type.Optional(Type.Integer()),
  labels: Type.Optional(Type.Array(Type.String())),
  http_user: Type.Optional(Nullable(Type.String())),
  terminated_at: Type.Optional(Nullable(Type.String())),
});

/** `GET /tunnel` query. */
export const ListTunnelsQuery = Type.Object({
  teamId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  page: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1 })),
  perPage: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
  status: Type.Optional(StringEnum(['pending', 'connected', 'disconnected', 'expired'] as const)),
  labels: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 50 })),
});

/** `BulkDeleteTunnelRequest`. */
export const BulkDeleteTunnelBody = Type.Object({
  tunnel_ids: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 500 }),
});

/** `TunnelListResponse`. */
export const TunnelListResponse = Type.Object({
  tunnels: Type.Array(TunnelStatusResponse),
  total: Type.Integer(),
  page: Type.Optional(Type.Integer()),
  per_page: Type.Optional(Type.Integer()),
  has_next: Type.Optional(Type.Boolean()),
});

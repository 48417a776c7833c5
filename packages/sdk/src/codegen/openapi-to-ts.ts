/**
 * Turns the server's `/openapi.json` into `src/generated/api.ts`: one request/query/response type
 * per control-plane operation and a compact runtime schema per response, so the SDK's types are
 * the server's. `scripts/generate-types.ts` writes the file; a test checks it is up to date.
 */

/** The subset of JSON Schema the server's OpenAPI document uses. */
export interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  [keyword: string]: unknown;
}

interface OpenApiOperation {
  parameters?: Array<{ in: string; name: string; required?: boolean; schema: JsonSchema }>;
  requestBody?: { content?: Record<string, { schema: JsonSchema }> };
  responses?: Record<string, { content?: Record<string, { schema: JsonSchema }> }>;
}

/** An OpenAPI 3 document, as far as the generator reads it. */
export interface OpenApiDocument {
  paths: Record<string, Record<string, OpenApiOperation>>;
}

/** Names of the operations the SDK calls, by `METHOD path`; others get a name derived from the path. */
export const OPERATIONS: Readonly<Record<string, string>> = {
  'GET /healthz': 'GetHealth',
  'POST /api/v1/sandbox': 'CreateSandbox',
  'GET /api/v1/sandbox': 'ListSandboxes',
  'DELETE /api/v1/sandbox': 'BulkDeleteSandboxes',
  'POST /api/v1/sandbox/status:batchGet': 'BatchGetSandboxStatus',
  'GET /api/v1/sandbox/{sandbox_id}': 'GetSandbox',
  'PATCH /api/v1/sandbox/{sandbox_id}': 'UpdateSandbox',
  'DELETE /api/v1/sandbox/{sandbox_id}': 'DeleteSandbox',
  'GET /api/v1/sandbox/{sandbox_id}/logs': 'GetSandboxLogs',
  'GET /api/v1/sandbox/{sandbox_id}/error-context': 'GetSandboxErrorContext',
  'POST /api/v1/sandbox/{sandbox_id}/auth': 'AuthorizeSandbox',
  'GET /api/v1/sandbox/{sandbox_id}/egress-policy': 'GetEgressPolicy',
  'PUT /api/v1/sandbox/{sandbox_id}/egress-policy': 'SetEgressPolicy',
  'GET /api/v1/sandbox/{sandbox_id}/egress-log': 'GetEgressLog',
  'GET /api/v1/sandbox/{sandbox_id}/events': 'GetSandboxEvents',
  'GET /api/v1/sandbox/{sandbox_id}/stats': 'GetSandboxStats',
  'POST /api/v1/sandbox/{sandbox_id}/pause': 'PauseSandbox',
  'POST /api/v1/sandbox/{sandbox_id}/resume': 'ResumeSandbox',
  'POST /api/v1/sandbox/{sandbox_id}/checkpoints': 'CreateCheckpoint',
  'GET /api/v1/sandbox/{sandbox_id}/checkpoints': 'ListSandboxCheckpoints',
  'GET /api/v1/sandbox/checkpoints': 'ListCheckpoints',
  'GET /api/v1/sandbox/checkpoints/{checkpoint_id}': 'GetCheckpoint',
  'DELETE /api/v1/sandbox/checkpoints/{checkpoint_id}': 'DeleteCheckpoint',
  'POST /api/v1/sandbox/checkpoints/{checkpoint_id}/fork': 'ForkCheckpoint',
  'POST /api/v1/sandbox/{sandbox_id}/fork': 'ForkSandbox',
  'POST /api/v1/sandbox/{sandbox_id}/expose': 'ExposePort',
  'GET /api/v1/sandbox/{sandbox_id}/expose': 'ListExposedPorts',
  'DELETE /api/v1/sandbox/{sandbox_id}/expose/{exposure_id}': 'UnexposePort',
  'GET /api/v1/sandbox/expose/all': 'ListAllExposedPorts',
  'POST /api/v1/sandbox/{sandbox_id}/ssh-session': 'CreateSshSession',
  'DELETE /api/v1/sandbox/{sandbox_id}/ssh-session/{session_id}': 'CloseSshSession',
  'POST /api/v1/tunnel': 'CreateTunnel',
  'GET /api/v1/tunnel': 'ListTunnels',
  'DELETE /api/v1/tunnel': 'BulkDeleteTunnels',
  'GET /api/v1/tunnel/{tunnel_id}': 'GetTunnel',
  'DELETE /api/v1/tunnel/{tunnel_id}': 'DeleteTunnel',
  'POST /api/v1/webhooks': 'CreateWebhook',
  'GET /api/v1/webhooks': 'ListWebhooks',
  'DELETE /api/v1/webhooks/{webhook_id}': 'DeleteWebhook',
  'GET /api/v1/webhooks/{webhook_id}/deliveries': 'ListWebhookDeliveries',
  'POST /api/v1/webhooks/{webhook_id}/test': 'TestWebhook',
  'GET /api/v1/me': 'GetMe',
  'GET /api/v1/users': 'ListUsers',
  'POST /api/v1/users': 'CreateUser',
  'DELETE /api/v1/users/{user_id}': 'DeleteUser',
  'GET /api/v1/users/{user_id}/quota': 'GetUserQuota',
  'PUT /api/v1/users/{user_id}/quota': 'SetUserQuota',
  'DELETE /api/v1/users/{user_id}/quota': 'ResetUserQuota',
  'GET /api/v1/teams': 'ListTeams',
  'POST /api/v1/teams': 'CreateTeam',
  'DELETE /api/v1/teams/{team_id}': 'DeleteTeam',
  'GET /api/v1/teams/{team_id}/members': 'ListTeamMembers',
  'PUT /api/v1/teams/{team_id}/members/{user_id}': 'SetTeamMember',
  'DELETE /api/v1/teams/{team_id}/members/{user_id}': 'RemoveTeamMember',
  'GET /api/v1/teams/{team_id}/quota': 'GetTeamQuota',
  'PUT /api/v1/teams/{team_id}/quota': 'SetTeamQuota',
  'DELETE /api/v1/teams/{team_id}/quota': 'ResetTeamQuota',
  'GET /api/v1/keys': 'ListKeys',
  'POST /api/v1/keys': 'CreateKey',
  'DELETE /api/v1/keys/{key_id}': 'RevokeKey',
};

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function propertyName(name: string): string {
  return IDENTIFIER.test(name) ? name : JSON.stringify(name);
}

/** The TypeScript type of a schema. */
export function schemaToType(schema: JsonSchema, indent = ''): string {
  if (schema.anyOf) {
    const members = [...new Set(schema.anyOf.map((s) => schemaToType(s, indent)))];
    return members.join(' | ');
  }
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
  switch (schema.type) {
    case 'string':
      return 'string';
    case 'number':
    case 'integer':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'null':
      return 'null';
    case 'array': {
      const item = schema.items ? schemaToType(schema.items, indent) : 'unknown';
      return `Array<${item}>`;
    }
    case 'object':
    case undefined: {
      const properties = Object.entries(schema.properties ?? {});
      const required = new Set(schema.required ?? []);
      const extra = schema.additionalProperties;
      const extraType = extra === true ? 'unknown' : typeof extra === 'object' ? schemaToType(extra, indent) : undefined;
      if (properties.length === 0) return extraType ? `Record<string, ${extraType}>` : 'Record<string, never>';
      const inner = `${indent}  `;
      const lines = properties.map(([name, s]) => `${inner}${propertyName(name)}${required.has(name) ? '' : '?'}: ${schemaToType(s, inner)};`);
      if (extraType) lines.push(`${inner}[key: string]: ${extraType === 'unknown' ? 'unknown' : `${extraType} | undefined`};`);
      return `{\n${lines.join('\n')}\n${indent}}`;
    }
    default:
      return 'unknown';
  }
}

/** The schema without validation keywords the client does not check (lengths, ranges, patterns, enums). */
export function runtimeSchema(schema: JsonSchema): JsonSchema {
  const out: JsonSchema = {};
  if (schema.anyOf) out.anyOf = schema.anyOf.map(runtimeSchema);
  if (schema.type) out.type = schema.type;
  if (schema.properties) out.properties = Object.fromEntries(Object.entries(schema.properties).map(([k, v]) => [k, runtimeSchema(v)]));
  if (schema.required && schema.required.length > 0) out.required = [...schema.required];
  if (schema.items) out.items = runtimeSchema(schema.items);
  if (typeof schema.additionalProperties === 'object') out.additionalProperties = runtimeSchema(schema.additionalProperties);
  return out;
}

/** `GET /api/v1/template/registry-credentials` → `GetTemplateRegistryCredentials`. */
function derivedName(method: string, path: string): string {
  const words = [method.toLowerCase(), ...path.replace(/^\/api\/v1\//, '').split(/[^A-Za-z0-9]+/)].filter((w) => w !== '');
  return words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}

function successResponse(op: OpenApiOperation): JsonSchema | undefined {
  const code = Object.keys(op.responses ?? {}).find((c) => /^2\d\d$/.test(c));
  return code ? op.responses?.[code]?.content?.['application/json']?.schema : undefined;
}

/** Generates the text of `src/generated/api.ts` from the OpenAPI document. */
export function generateApiModule(doc: OpenApiDocument): string {
  const out: string[] = [
    '// Generated by packages/sdk/scripts/generate-types.ts from the server\'s /openapi.json. Do not edit:',
    '// run `node --conditions=development --import tsx packages/sdk/scripts/generate-types.ts` after changing a route schema.',
    '',
    "import type { JsonSchema } from '../codegen/openapi-to-ts.js';",
    '',
  ];
  const schemas: string[] = [];
  const ops: string[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const key = `${method.toUpperCase()} ${path}`;
      const name = OPERATIONS[key] ?? derivedName(method, path);
      const body = op.requestBody?.content?.['application/json']?.schema;
      if (body) out.push(`/** Body of \`${key}\`. */`, `export type ${name}Request = ${schemaToType(body)};`, '');
      const query = (op.parameters ?? []).filter((p) => p.in === 'query');
      if (query.length > 0) {
        const querySchema: JsonSchema = {
          type: 'object',
          properties: Object.fromEntries(query.map((p) => [p.name, p.schema])),
          required: query.filter((p) => p.required).map((p) => p.name),
        };
        out.push(`/** Query of \`${key}\`. */`, `export type ${name}Query = ${schemaToType(querySchema)};`, '');
      }
      const response = successResponse(op);
      if (response) {
        out.push(`/** Success response of \`${key}\`. */`, `export type ${name}Response = ${schemaToType(response)};`, '');
        schemas.push(`  ${name}: ${JSON.stringify(runtimeSchema(response))},`);
      }
      ops.push(`  ${name}: { method: ${JSON.stringify(method.toUpperCase())}, path: ${JSON.stringify(path)} },`);
    }
  }
  out.push('/** Method and path template of every operation. */', 'export const OPERATION_ROUTES = {', ...ops, '} as const;', '');
  out.push('/** Name of an operation. */', 'export type OperationName = keyof typeof OPERATION_ROUTES;', '');
  out.push(
    '/** What the client checks in each success response: types and required fields. */',
    'export const RESPONSE_SCHEMAS: Readonly<Record<string, JsonSchema>> = {',
    ...schemas,
    '};',
    '',
  );
  return out.join('\n');
}

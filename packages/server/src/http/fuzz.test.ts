/**
 * Property/fuzz test of the whole HTTP surface. Every operation listed in `/openapi.json` (so new
 * routes are covered without touching this file) gets random and boundary requests: mutated
 * path params, methods, query strings, bodies, content types and credentials. Whatever comes in,
 * the server must answer with a 2xx or 4xx JSON object; 4xx bodies carry a string `detail` and
 * 422 bodies a non-empty `errors: [{param, details}]`.
 *
 * Seed: fixed by default, `CORRAL_FUZZ_SEED=<int>` overrides it; `CORRAL_FUZZ_RUNS=<n>` sets the
 * runs per operation. A failure prints the seed and the exact request.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import type { ImageBuilder, ImageBuildRequest, ImageBuildResult, ImageTransferRequest } from '../runtime/image-builder.js';
import { GatedRuntime } from '../testing/gated-runtime.js';
import { startTestServer, type TestServer } from '../testing/test-server.js';

const DEFAULT_SEED = 20_260_522;
const SEED = process.env.CORRAL_FUZZ_SEED !== undefined ? Number.parseInt(process.env.CORRAL_FUZZ_SEED, 10) : DEFAULT_SEED;
const RUNS_PER_OPERATION = process.env.CORRAL_FUZZ_RUNS !== undefined ? Number.parseInt(process.env.CORRAL_FUZZ_RUNS, 10) : 200;

type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD' | 'OPTIONS';
const METHODS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

/** The slice of JSON Schema the generated OpenAPI document uses. */
interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
}

interface OpenApiParameter {
  in: string;
  name: string;
  schema?: JsonSchema;
}

interface OpenApiOperation {
  parameters?: OpenApiParameter[];
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
  responses?: Record<string, unknown>;
}

interface Operation {
  method: HttpMethod;
  template: string;
  pathParams: string[];
  queryParams: OpenApiParameter[];
  bodySchema: JsonSchema | undefined;
  declaredStatuses: Set<string>;
  /** Matches a concrete request path (segments: anything without a slash). */
  pattern: RegExp;
}

/** One generated request, kept printable so a failure can be replayed by hand. */
interface FuzzRequest {
  method: HttpMethod;
  url: string;
  headers: Record<string, string>;
  /** Raw body text; `undefined` sends no body at all. */
  body: string | undefined;
}

// --- building blocks ---------------------------------------------------------------------------

/** Marks where a deeply nested value goes; replaced after `JSON.stringify` (which would overflow). */
const DEEP_MARKER = '\u0000DEEP:';

function deepJson(depth: number, kind: 'object' | 'array'): string {
  return kind === 'object' ? `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}` : `${'['.repeat(depth)}${']'.repeat(depth)}`;
}

/** `JSON.stringify` that expands deep-nesting markers into real nested JSON text. */
function toJsonText(value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  return text.replace(/"\\u0000DEEP:(\d+):(object|array)"/g, (_m, depth: string, kind: 'object' | 'array') => deepJson(Number(depth), kind));
}

const deepValue = fc
  .record({ depth: fc.constantFrom(64, 600, 2_500, 4_000, 6_000, 12_000), kind: fc.constantFrom('object' as const, 'array' as const) })
  .map(({ depth, kind }) => `${DEEP_MARKER}${depth}:${kind}`);

const hugeString = fc.constantFrom(300, 70_000, 600_000).chain((n) => fc.constantFrom('a', 'é', '😀', '\u0000', ' ').map((c) => c.repeat(n)));

const oddKeys = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '', ' ', 'ü', '😀', 'a.b', '0', 'A'.repeat(300));

const oddStrings = fc.oneof(
  fc.constantFrom('', ' ', '..', '.', '/', '\u0000', 'null', 'undefined', 'NaN', '-1', '1e309', '%00', '%ZZ', '../../etc/passwd', 'ü', '😀', '\u202e', '<script>', "'; DROP TABLE sandboxes;--"),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);

const oddNumbers = fc.oneof(
  fc.constantFrom(0, -0, -1, 1.5, 0.1, 1e-7, 1e308, -1e308, 2 ** 53 + 2, -(2 ** 53) - 2, 2 ** 31, 2 ** 63, 4_294_967_296),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
);

/** A value of any JSON type, biased to the awkward ones. */
const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 4 },
  { arbitrary: oddStrings, weight: 2 },
  { arbitrary: oddNumbers, weight: 2 },
  { arbitrary: fc.constantFrom(null, true, false, [], {}), weight: 2 },
  { arbitrary: hugeString, weight: 1 },
  { arbitrary: deepValue, weight: 1 },
  { arbitrary: fc.dictionary(oddKeys, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }).map(ownEntries), weight: 1 },
);

/** An object whose keys are own data properties, `__proto__` included (as `JSON.parse` would make it). */
function ownEntries(value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

function typesOf(schema: JsonSchema): string[] {
  if (schema.type === undefined) return [];
  return Array.isArray(schema.type) ? schema.type : [schema.type];
}

/** A value that satisfies (or sits exactly on the boundary of) the schema. */
function validFor(schema: JsonSchema, depth = 0): fc.Arbitrary<unknown> {
  const branches = schema.anyOf ?? schema.oneOf;
  if (branches && branches.length > 0) return fc.oneof(...branches.map((b) => validFor(b, depth)));
  if (schema.enum && schema.enum.length > 0) return fc.constantFrom(...schema.enum);
  const type = typesOf(schema)[0];
  switch (type) {
    case 'string': {
      const min = schema.minLength ?? 0;
      const max = Math.min(schema.maxLength ?? 32, 32);
      const boundary = [schema.minLength, schema.maxLength].filter((n): n is number => n !== undefined && n <= 70_000).map((n) => 'a'.repeat(n));
      // Shaped like a name, an env-var key or a label, so it also passes the patterns those fields have.
      const word = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,30}$/).map((s) => s.padEnd(min, 'a').slice(0, Math.max(max, min)));
      return boundary.length > 0 ? fc.oneof({ arbitrary: word, weight: 4 }, { arbitrary: fc.constantFrom(...boundary), weight: 1 }) : word;
    }
    case 'integer': {
      const min = schema.minimum ?? -1_000;
      const max = schema.maximum ?? 1_000_000;
      return fc.oneof(fc.integer({ min: Math.ceil(min), max: Math.floor(max) }), fc.constantFrom(Math.ceil(min), Math.floor(max)));
    }
    case 'number': {
      const min = schema.minimum ?? -1_000;
      const max = schema.maximum ?? 1_000_000;
      return fc.oneof(fc.double({ min, max, noNaN: true }), fc.constantFrom(min, max));
    }
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const items = schema.items ?? {};
      const minLength = schema.minItems ?? 0;
      const maxLength = Math.max(minLength, Math.min(schema.maxItems ?? 4, 4));
      const small = fc.array(validFor(items, depth + 1), { minLength, maxLength });
      // Exactly the maximum count, a boundary worth hitting (capped so a run stays fast).
      const atMax = schema.maxItems !== undefined && schema.maxItems <= 600 ? fc.array(validFor(items, depth + 1), { minLength: schema.maxItems, maxLength: schema.maxItems }) : small;
      return fc.oneof({ arbitrary: small, weight: 5 }, { arbitrary: atMax, weight: 1 });
    }
    case 'object':
    default:
      return objectFor(schema, depth, false);
  }
}

/** A value of the wrong kind for the schema: wrong types, nulls, huge or deep values, out-of-range numbers. */
function mutatedFor(schema: JsonSchema): fc.Arbitrary<unknown> {
  const types = new Set((schema.anyOf ?? schema.oneOf ?? [schema]).flatMap(typesOf));
  const candidates: fc.Arbitrary<unknown>[] = [anyJson, fc.constant(null), hugeString, deepValue];
  if (types.has('integer') || types.has('number')) {
    const edges = [schema.minimum, schema.maximum]
      .filter((n): n is number => n !== undefined)
      .flatMap((n) => [n - 1, n + 1, n - 0.5, n + 0.5, String(n)]);
    candidates.push(fc.constantFrom(1.5, -1, 0, 1e308, -1e308, 2 ** 53 + 1, '5', 'NaN', true, ...edges));
  }
  if (types.has('string')) candidates.push(fc.constantFrom(0, 1, true, [], {}, ['a'], '', 'a'.repeat((schema.maxLength ?? 100) + 1)));
  if (types.has('array')) candidates.push(fc.constantFrom('a', 1, {}, [null], [1], [[]], [{}]), fc.array(fc.constant('dup'), { minLength: 2, maxLength: 2 }));
  if (types.has('object')) candidates.push(fc.constantFrom([], 'x', 1), fc.dictionary(oddKeys, anyJson, { maxKeys: 4 }).map(ownEntries));
  return fc.oneof(...candidates);
}

/**
 * An object shaped like the schema: required fields mostly present, optional ones sometimes.
 * With `mutate`, one or two fields get a wrong value and odd extra keys (`__proto__`, …) appear,
 * so the rest of the body stays valid and the bad field reaches the code behind validation.
 */
function objectFor(schema: JsonSchema, depth: number, mutate: boolean): fc.Arbitrary<unknown> {
  const properties = schema.properties ?? {};
  const required = new Set(schema.required ?? []);
  const names = Object.keys(properties);
  const freeForm = names.length === 0 && schema.additionalProperties !== false && typeof schema.additionalProperties !== 'object';
  if (freeForm) {
    // Anything goes inside (advanced_configs): deep, huge and prototype-named values are all valid input.
    const value = depth > 1 ? fc.jsonValue({ maxDepth: 1 }) : fc.oneof({ arbitrary: anyJson, weight: 2 }, { arbitrary: deepValue, weight: 1 });
    return fc.dictionary(fc.oneof(oddKeys, fc.string({ maxLength: 10 })), value, { minKeys: 1, maxKeys: 4 }).map(ownEntries);
  }
  const mutatedNames = mutate && names.length > 0 ? fc.subarray(names, { minLength: 1, maxLength: Math.min(2, names.length) }) : fc.constant<string[]>([]);
  const extraValue = depth > 1 ? fc.jsonValue({ maxDepth: 1 }) : anyJson;
  const extraKeys =
    typeof schema.additionalProperties === 'object'
      ? fc.dictionary(
          fc.oneof(oddKeys, fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/)),
          mutate ? fc.oneof(validFor(schema.additionalProperties), extraValue) : validFor(schema.additionalProperties),
          { maxKeys: 4 },
        )
      : fc.dictionary(mutate ? oddKeys : fc.stringMatching(/^x_[a-z]{1,6}$/), extraValue, { maxKeys: mutate ? 2 : 1 });
  return mutatedNames.chain((mutated) => {
    const field = (name: string): fc.Arbitrary<unknown> => {
      const propertySchema = properties[name] ?? {};
      if (mutated.includes(name)) return mutatedFor(propertySchema);
      return fc.option(validFor(propertySchema, depth + 1), { nil: undefined, freq: required.has(name) ? 20 : 2 });
    };
    const present = fc.record(Object.fromEntries(names.map((name) => [name, field(name)])) as Record<string, fc.Arbitrary<unknown>>);
    return fc.tuple(present, extraKeys).map(([fields, extra]) => {
      const out = ownEntries(Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)));
      for (const [k, v] of Object.entries(extra)) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
      return out;
    });
  });
}

// --- requests -----------------------------------------------------------------------------------

interface Fixtures {
  adminKey: string;
  userKey: string;
  revokedKey: string;
  /** Ids that exist: sandboxes (the caller's and someone else's), a user, a team, a spare key. */
  realIds: string[];
}

function pathSegment(realIds: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.constantFrom(...realIds), weight: 5 },
    { arbitrary: fc.stringMatching(/^[a-z0-9]{24}$/), weight: 2 },
    { arbitrary: oddStrings.map((s) => encodeURIComponent(s)), weight: 3 },
    { arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }).map((s) => encodeURIComponent(s)), weight: 1 },
    // Raw, not re-encoded: empty, dot segments, bad or partial percent-escapes, reserved characters, lengths around the 256 limit.
    {
      arbitrary: fc.constantFrom('', '.', '..', '%2e%2e', '%2F', '%00', '%', '%Z', '%ZZ', '%E2%82', '%C0%AF', 'a%20b', 'a+b', ';x=1', '*', ':', '~', 'status:batchGet', 'expose', 'all', 'a'.repeat(256), 'a'.repeat(257), 'b'.repeat(5_000)),
      weight: 3,
    },
  );
}

const QUERY_VALUES = fc.oneof(
  { arbitrary: fc.constantFrom('', '0', '1', '-1', '2', '1.5', '1e3', '1e309', 'NaN', 'Infinity', '-Infinity', '99999999999999999999999', '-0', '0x10', 'true', 'false', 'null', '[]', '{}'), weight: 4 },
  { arbitrary: fc.constantFrom('PENDING', 'RUNNING', 'TERMINATED', 'TIMEOUT', 'pending', 'connected', 'a', 'b', 'x'.repeat(129)), weight: 2 },
  { arbitrary: fc.string({ maxLength: 20 }), weight: 2 },
  { arbitrary: fc.integer().map(String), weight: 1 },
);

function queryString(op: Operation): fc.Arbitrary<string> {
  const names = op.queryParams.map((p) => p.name);
  const key = fc.oneof(
    ...(names.length > 0 ? [{ arbitrary: fc.constantFrom(...names), weight: 6 }] : []),
    { arbitrary: fc.constantFrom('page', 'per_page', 'labels', 'labels[]', '__proto__', 'constructor', '', 'a[b]', 'toString'), weight: 2 },
    { arbitrary: fc.string({ maxLength: 8 }), weight: 1 },
  );
  const pair = fc.tuple(key, QUERY_VALUES, fc.boolean()).map(([k, v, raw]) => (raw ? `${k}=${v}` : `${encodeURIComponent(k)}=${encodeURIComponent(v)}`));
  return fc.oneof(
    { arbitrary: fc.constant(''), weight: 2 },
    { arbitrary: fc.array(pair, { minLength: 1, maxLength: 6 }).map((pairs) => `?${pairs.join('&')}`), weight: 6 },
    { arbitrary: fc.constantFrom('?', '?&&', '?=', '?==&=', '?%', '?a=%ZZ', '?page', `?${'labels=a&'.repeat(60)}`), weight: 1 },
  );
}

const MALFORMED_BODIES = fc.constantFrom('{', '}', '{"a":}', '{"a":1,}', '[1,]', 'nul', 'tru', "{'a':1}", '{"a":"\u0000"}', '\uFEFF{}', '{"a":1}{"b":2}', '"unterminated', '01', '-', '{"__proto__":{"isAdmin":true}}', '{"constructor":{"prototype":{"x":1}}}', ' ', '\n\t');

function bodyText(op: Operation): fc.Arbitrary<string | undefined> {
  const shaped = op.bodySchema ? (op.bodySchema.anyOf ?? op.bodySchema.oneOf ?? [op.bodySchema]).find((s) => typesOf(s).includes('object') || s.properties) : undefined;
  const options: Array<fc.WeightedArbitrary<string | undefined>> = [
    { arbitrary: fc.constant(undefined), weight: 2 },
    { arbitrary: fc.constant(''), weight: 1 },
    { arbitrary: anyJson.map(toJsonText), weight: 3 },
    { arbitrary: MALFORMED_BODIES, weight: 2 },
  ];
  if (shaped) {
    options.push({ arbitrary: objectFor(shaped, 0, false).map(toJsonText), weight: 5 });
    options.push({ arbitrary: objectFor(shaped, 0, true).map(toJsonText), weight: 8 });
  } else {
    options.push({ arbitrary: fc.constant('{}'), weight: 2 });
  }
  return fc.oneof(...options);
}

const CONTENT_TYPES = fc.oneof(
  { arbitrary: fc.constant('application/json'), weight: 12 },
  {
    arbitrary: fc.constantFrom(
      undefined,
      '',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=xyz',
      'application/octet-stream',
      'application/json; charset=utf-8',
      'application/json; charset=latin1',
      'application/json; charset=utf-16',
      'APPLICATION/JSON',
      'application/vnd.api+json',
      'application/jsonx',
      'application/json;;;',
      ';',
      'text/html',
    ),
    weight: 3,
  },
);

function authorization(fixtures: Fixtures): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { arbitrary: fc.constant(`Bearer ${fixtures.adminKey}`), weight: 12 },
    { arbitrary: fc.constant(`Bearer ${fixtures.userKey}`), weight: 4 },
    { arbitrary: fc.constant(`Bearer ${fixtures.revokedKey}`), weight: 1 },
    {
      arbitrary: fc.constantFrom(
        undefined,
        '',
        'Bearer',
        'Bearer ',
        'bearer ' + fixtures.adminKey,
        `Bearer  ${fixtures.adminKey}  `,
        `Bearer ${fixtures.adminKey}x`,
        `Bearer ${fixtures.adminKey} extra`,
        `Basic ${Buffer.from('a:b').toString('base64')}`,
        `Token ${fixtures.adminKey}`,
        'Bearer corral_',
        `Bearer ${'k'.repeat(10_000)}`,
        'Bearer \u00ff\u00fe',
      ),
      weight: 3,
    },
    { arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 40 }).map((s) => `Bearer ${s.replace(/[\r\n\0]/g, '')}`), weight: 1 },
  );
}

function requestFor(op: Operation, fixtures: Fixtures): fc.Arbitrary<FuzzRequest> {
  const segments = fc.tuple(...op.pathParams.map(() => pathSegment(fixtures.realIds)));
  const method = fc.oneof({ arbitrary: fc.constant(op.method), weight: 8 }, { arbitrary: fc.constantFrom(...METHODS), weight: 1 });
  return fc
    .record({ method, segments, query: queryString(op), body: bodyText(op), contentType: CONTENT_TYPES, auth: authorization(fixtures), requestId: fc.option(oddStrings, { freq: 8 }) })
    .map(({ method, segments, query, body, contentType, auth, requestId }) => {
      let path = op.template;
      op.pathParams.forEach((name, i) => {
        path = path.replace(`{${name}}`, segments[i] ?? '');
      });
      const headers: Record<string, string> = {};
      if (auth !== undefined) headers.authorization = auth;
      if (contentType !== undefined && body !== undefined) headers['content-type'] = contentType;
      // A request id the client chose is echoed into logs and error details: make it awkward too.
      if (requestId !== null) headers['x-request-id'] = requestId.replace(/[^\x20-\x7e]/g, '?');
      return { method, url: `${path}${query}`, headers, body };
    });
}

// --- the checks ---------------------------------------------------------------------------------

function describeRequest(request: FuzzRequest): string {
  const body = request.body === undefined ? '(none)' : request.body.length > 400 ? `${request.body.slice(0, 400)}… (${request.body.length} chars)` : request.body;
  const url = request.url.length > 300 ? `${request.url.slice(0, 300)}… (${request.url.length} chars)` : request.url;
  return `${request.method} ${url}\nheaders: ${JSON.stringify(request.headers, (_k, v: unknown) => (typeof v === 'string' && v.length > 120 ? `${v.slice(0, 120)}…` : v))}\nbody: ${body}`;
}

/** The operations that may answer 501 by design (documented in their responses): routes whose backend is not served yet. */
function allowsNotImplemented(operations: Operation[], request: FuzzRequest): boolean {
  const path = request.url.split('?')[0] ?? '';
  return operations.some((op) => op.method === request.method && op.declaredStatuses.has('501') && op.pattern.test(path));
}

function checkResponse(operations: Operation[], request: FuzzRequest, response: LightMyRequestResponse): void {
  const where = () => `\n--- request (CORRAL_FUZZ_SEED=${SEED}) ---\n${describeRequest(request)}\n--- response ---\n${response.statusCode} ${response.body.slice(0, 500)}`;
  const status = response.statusCode;
  let parsed: unknown;
  if (request.method !== 'HEAD') {
    try {
      parsed = JSON.parse(response.body);
    } catch {
      assert.fail(`response body is not JSON${where()}`);
    }
    assert.ok(parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed), `response body is not a JSON object${where()}`);
    assert.match(String(response.headers['content-type'] ?? ''), /^application\/json/, `content-type is not JSON${where()}`);
  }
  const body = (parsed ?? {}) as Record<string, unknown>;
  if (status === 501 && body.code === 'NOT_IMPLEMENTED' && allowsNotImplemented(operations, request)) return;
  assert.ok((status >= 200 && status < 300) || (status >= 400 && status < 500), `status ${status} is neither 2xx nor 4xx${where()}`);
  if (request.method === 'HEAD' || status < 400) return;
  assert.equal(typeof body.detail, 'string', `4xx body has no string "detail"${where()}`);
  assert.ok((body.detail as string).length > 0, `4xx "detail" is empty${where()}`);
  if (status === 422) {
    const errors = body.errors;
    assert.ok(Array.isArray(errors) && errors.length > 0, `422 body has no non-empty "errors" array${where()}`);
    for (const entry of errors as unknown[]) {
      const e = entry as Record<string, unknown> | null;
      assert.ok(e !== null && typeof e === 'object', `422 errors entry is not an object${where()}`);
      assert.ok(typeof e.param === 'string' && e.param.length > 0, `422 errors entry has no non-empty "param"${where()}`);
      assert.ok(typeof e.details === 'string' && e.details.length > 0, `422 errors entry has no non-empty "details"${where()}`);
    }
  }
}

async function send(ts: TestServer, request: FuzzRequest): Promise<LightMyRequestResponse> {
  return ts.server.app.inject({
    method: request.method,
    url: request.url,
    headers: request.headers,
    ...(request.body !== undefined ? { payload: request.body } : {}),
  });
}

function operationsOf(doc: { paths: Record<string, Record<string, OpenApiOperation>> }): Operation[] {
  const operations: Operation[] = [];
  for (const [template, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const upper = method.toUpperCase() as HttpMethod;
      if (!METHODS.includes(upper)) continue;
      const parameters = op.parameters ?? [];
      const pathParams = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] ?? '');
      const escaped = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]*');
      operations.push({
        method: upper,
        template,
        pathParams,
        queryParams: parameters.filter((p) => p.in === 'query'),
        bodySchema: op.requestBody?.content?.['application/json']?.schema,
        declaredStatuses: new Set(Object.keys(op.responses ?? {})),
        pattern: new RegExp(`^${escaped}/?$`),
      });
    }
  }
  return operations;
}

/**
 * Runs a property; on failure throws the (shrunk) first failing request's own assertion message,
 * which names the request in full, plus the seed to replay it. fast-check's own report would
 * print multi-megabyte bodies verbatim.
 */
async function checkProperty(property: fc.IAsyncProperty<[FuzzRequest]>, parameters: { seed: number; numRuns: number }, label: string): Promise<void> {
  const details = await fc.check(property, { ...parameters, maxSkipsPerRun: 0 });
  if (!details.failed) return;
  const error = details.errorInstance;
  const message = error instanceof Error ? error.message : String(error);
  console.error(`fuzz failure on ${label}: rerun with CORRAL_FUZZ_SEED=${SEED} (fast-check seed ${details.seed}, path ${details.counterexamplePath ?? '?'})`);
  assert.fail(`${label}: failed after ${details.numRuns} run(s), shrunk ${details.numShrinks} time(s), fast-check seed ${details.seed}\n${message}`);
}

// --- the test -----------------------------------------------------------------------------------

describe('HTTP fuzz: every route answers 2xx/4xx JSON objects', () => {
  let ts: TestServer;
  let fixtures: Fixtures;
  let operations: Operation[];
  const succeededOperations = new Set<string>();

  before(async () => {
    ts = await startTestServer();
    const user = await ts.createUser('fuzz-user');
    const victim = await ts.createUser('fuzz-victim');
    const spare = await ts.request('POST', '/api/v1/keys', { body: { user_id: victim.id, name: 'spare' } });
    const revoked = await ts.request('POST', '/api/v1/keys', { body: { user_id: user.id, name: 'revoked' } });
    const revokedBody = revoked.json<{ id: string; key: string }>();
    assert.equal((await ts.request('DELETE', `/api/v1/keys/${revokedBody.id}`)).statusCode, 200);
    const team = await ts.request('POST', '/api/v1/teams', { body: { name: 'fuzz-team' } });
    const realIds = [victim.id, spare.json<{ id: string }>().id, team.json<{ id: string }>().id];
    for (const key of [ts.adminKey, ts.adminKey, user.key, victim.key]) {
      const created = await ts.request('POST', '/api/v1/sandbox', { key, body: { name: 'fuzz-target', docker_image: 'busybox', labels: ['fuzz'], secrets: { S: 'v' } } });
      assert.equal(created.statusCode, 201, created.body);
      realIds.push(created.json<{ id: string }>().id);
    }
    fixtures = { adminKey: ts.adminKey, userKey: user.key, revokedKey: revokedBody.key, realIds };
    const doc = await ts.request('GET', '/openapi.json', { key: null });
    assert.equal(doc.statusCode, 200);
    operations = operationsOf(doc.json());
    assert.ok(operations.length >= 10, `expected the API's operations in /openapi.json, found ${operations.length}`);
  });

  after(async () => {
    await ts?.close();
  });

  test('every operation in /openapi.json survives random and boundary requests', async (t) => {
    let index = 0;
    for (const op of operations) {
      const seed = SEED + index++;
      await t.test(`${op.method} ${op.template}`, async () => {
        const property = fc.asyncProperty(requestFor(op, fixtures), async (request) => {
          const response = await send(ts, request);
          checkResponse(operations, request, response);
          if (response.statusCode < 300 && request.method === op.method) succeededOperations.add(`${op.method} ${op.template}`);
        });
        await checkProperty(property, { seed, numRuns: RUNS_PER_OPERATION }, `${op.method} ${op.template}`);
      });
    }
  });

  test('unknown routes and garbage URLs answer JSON 4xx', async () => {
    const garbagePath = fc.oneof(
      fc.array(pathSegment(fixtures.realIds), { minLength: 1, maxLength: 5 }).map((s) => `/${s.join('/')}`),
      fc.array(pathSegment(fixtures.realIds), { minLength: 1, maxLength: 4 }).map((s) => `/api/v1/${s.join('/')}`),
      fc.constantFrom('//', '/api', '/api/v1', '/api/v1/', '/api/v2/sandbox', '/API/V1/SANDBOX', '/api/v1/sandbox/a/b/c/d', '/api/v1/sandbox/status:batchget', '/healthz/x', '/openapi.json/x', '/%', '/%ZZ', '/..%2f..%2f'),
    );
    const request = fc
      // `/` is the dashboard's page (HTML; dashboard-routes.test.ts), not an unknown route.
      .record({ method: fc.constantFrom(...METHODS), path: garbagePath.filter((path) => path !== '/'), auth: authorization(fixtures), body: fc.option(anyJson.map(toJsonText), { nil: undefined }) })
      .map(({ method, path, auth, body }): FuzzRequest => ({
        method,
        url: path,
        headers: { ...(auth !== undefined ? { authorization: auth } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body,
      }));
    await checkProperty(
      fc.asyncProperty(request, async (r) => checkResponse(operations, r, await send(ts, r))),
      { seed: SEED, numRuns: RUNS_PER_OPERATION * 3 },
      'unknown routes',
    );
  });

  test('the fuzzer reached the handlers, and the server still works afterwards', async () => {
    // If most operations never answered 2xx, the generators only exercised validation and auth.
    const reachable = operations.filter((op) => !op.declaredStatuses.has('501')).length;
    assert.ok(
      succeededOperations.size >= Math.floor(reachable / 2),
      `only ${succeededOperations.size} of ${reachable} operations ever answered 2xx: ${[...succeededOperations].join(', ')}`,
    );
    const health = await ts.request('GET', '/healthz', { key: null });
    assert.equal(health.statusCode, 200, health.body);
    assert.deepEqual(health.json(), { status: 'ok', isolation: null });
    const created = await ts.request('POST', '/api/v1/sandbox', { body: { name: 'after-fuzz', docker_image: 'busybox' } });
    assert.equal(created.statusCode, 201, created.body);
    const { id } = created.json<{ id: string }>();
    const fetched = await ts.request('GET', `/api/v1/sandbox/${id}`);
    assert.equal(fetched.statusCode, 200, fetched.body);
    assert.equal(fetched.json<{ id: string; name: string }>().name, 'after-fuzz');
  });
});

/** A builder that builds nothing and answers at once: the images API's handlers run past "no builder" (501). */
class InstantBuilder implements ImageBuilder {
  unavailable(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }
  build(request: ImageBuildRequest): Promise<ImageBuildResult> {
    return Promise.resolve({ reference: request.reference, digest: `sha256:${'0'.repeat(64)}`, sizeBytes: 1 });
  }
  transfer(request: ImageTransferRequest): Promise<ImageBuildResult> {
    return Promise.resolve({ reference: request.reference, digest: `sha256:${'1'.repeat(64)}`, sizeBytes: 1 });
  }
  rename(): Promise<string> {
    return Promise.resolve(`sha256:${'2'.repeat(64)}`);
  }
  remove(): Promise<void> {
    return Promise.resolve();
  }
}

class BuildingRuntime extends GatedRuntime {
  readonly imageBuilder = new InstantBuilder();
}

describe('HTTP fuzz: the images API with a builder present', () => {
  let ts: TestServer;
  let fixtures: Fixtures;
  let operations: Operation[];

  before(async () => {
    ts = await startTestServer({}, {}, { runtime: new BuildingRuntime() });
    const user = await ts.createUser('fuzz-images');
    // Something to find: a transferred image of the user, and one of the admin.
    for (const key of [user.key, ts.adminKey]) {
      const made = await ts.request('POST', '/api/v1/images/build', { key, body: { source_image: '127.0.0.1:5000/corral/busybox:latest', image_name: 'fuzz', image_tag: 'v1' } });
      assert.equal(made.statusCode, 201, made.body);
    }
    fixtures = { adminKey: ts.adminKey, userKey: user.key, revokedKey: 'sk-revoked-none', realIds: ['fuzz', 'v1', 'busybox', 'latest'] };
    const doc = await ts.request('GET', '/openapi.json', { key: null });
    operations = operationsOf(doc.json()).filter((op) => op.template.includes('/images') || op.template.includes('check-docker-image'));
    assert.ok(operations.length >= 10, `expected the images API's operations, found ${operations.map((o) => o.template).join(', ')}`);
  });

  after(async () => {
    await ts?.close();
  });

  test('every images operation survives random and boundary requests (2xx/4xx JSON; 501 only where declared)', async (t) => {
    let index = 0;
    for (const op of operations) {
      const seed = SEED + 7919 + index++;
      await t.test(`${op.method} ${op.template}`, async () => {
        const property = fc.asyncProperty(requestFor(op, fixtures), async (request) => {
          const response = await send(ts, request);
          checkResponse(operations, request, response);
        });
        await checkProperty(property, { seed, numRuns: RUNS_PER_OPERATION }, `${op.method} ${op.template}`);
      });
    }
  });
});

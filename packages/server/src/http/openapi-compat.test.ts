/**
 * Compares Corral's generated `/openapi.json` with Prime's published OpenAPI documents
 * (/work/shared/reference/openapi-sandbox.yml, openapi-tunnel.yml, openapi-images.yml) for every operation the
 * reference has: the operation exists; request bodies accept every reference property with a
 * compatible type and no stricter bounds or enums, and require nothing more; the success (and
 * 422) responses carry every property the reference requires with a type the client expects;
 * query and path parameters exist.
 *
 * Where the reference contradicts the protocol notes (/work/shared/reference/prime-sandbox-protocol.md)
 * the protocol wins; each such exception is listed in PROTOCOL_EXCEPTIONS with its section.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { startTestServer, type TestServer } from '../testing/test-server.js';

const REFERENCE_DIR = process.env.CORRAL_REFERENCE_DIR ?? '/work/shared/reference';
const REFERENCE_FILES = ['openapi-sandbox.yml', 'openapi-tunnel.yml', 'openapi-images.yml'];

interface Schema {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  enum?: unknown[];
  const?: unknown;
  additionalProperties?: boolean | Schema;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
}

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: Schema;
}

interface Operation {
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: Schema }> };
  responses?: Record<string, { content?: Record<string, { schema?: Schema }> }>;
}

interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

/**
 * Places where the reference OpenAPI is older than, or contradicts, the protocol notes. Keyed by
 * a location string the comparison builds (`<METHOD> <path> <part> <dotted.property>`; `*` for any
 * operation).
 */
const PROTOCOL_EXCEPTIONS = {
  /**
   * §2.4 SandboxStatus: `PENDING, PROVISIONING, RUNNING, PAUSED, ERROR, TERMINATED, TIMEOUT`
   * ("OpenAPI omits TIMEOUT; SDK and CLI treat ERROR|TERMINATED|TIMEOUT as terminal"). Our
   * responses may say TIMEOUT although the reference enum lacks it.
   */
  extraResponseEnumValues: new Map<string, string[]>([
    ['* response status', ['TIMEOUT']],
    ['* response sandboxes[].status', ['TIMEOUT']],
    ['* response statuses[].status', ['TIMEOUT']],
  ]),
  /**
   * §2.3 `gpu_type`: "long enum in OpenAPI; in practice only `RTX_PRO_6000`, `H200*` valid for
   * sandboxes (prime#838)". `RTX_PRO_6000` and `H200` are not in the reference's GPUType enum, so
   * the reference enum cannot bound what `gpuType` says in a response. Requests must still accept
   * every reference value, and the two protocol names as well (checked separately below).
   */
  responseEnumNotBounded: new Set<string>(['* response gpuType', '* response sandboxes[].gpuType']),
};

/** GPU type names the protocol notes (§2.3) say the real service accepts, beyond the reference enum. */
const PROTOCOL_GPU_TYPES = ['RTX_PRO_6000', 'H200'];

function loadReference(file: string): OpenApiDocument {
  return parse(readFileSync(`${REFERENCE_DIR}/${file}`, 'utf8')) as OpenApiDocument;
}

function resolve(doc: OpenApiDocument, schema: Schema | undefined): Schema {
  let current = schema ?? {};
  for (let hops = 0; current.$ref !== undefined && hops < 20; hops++) {
    const name = /^#\/components\/schemas\/(.+)$/.exec(current.$ref)?.[1];
    const target = name === undefined ? undefined : doc.components?.schemas?.[name];
    assert.ok(target, `unresolvable $ref ${current.$ref}`);
    current = target;
  }
  return current;
}

/** A schema seen through its `anyOf`/`oneOf`/`allOf` branches and `$ref`s. */
interface Shape {
  /** JSON types other than null; `any` when a branch says nothing. */
  types: Set<string>;
  nullable: boolean;
  /** Enum values when every non-null branch is an enum (or const). */
  enumValues: Set<unknown> | undefined;
  /** The object branches, for property checks. */
  objects: Schema[];
  /** The array branches' item schemas. */
  items: Schema[];
  /** The non-null branches, for bound checks. */
  branches: Schema[];
}

function shapeOf(doc: OpenApiDocument, schema: Schema | undefined): Shape {
  const shape: Shape = { types: new Set(), nullable: false, enumValues: new Set(), objects: [], items: [], branches: [] };
  let allEnums = true;
  const visit = (raw: Schema | undefined): void => {
    const s = resolve(doc, raw);
    const branches = s.anyOf ?? s.oneOf;
    if (branches) {
      for (const b of branches) visit(b);
      return;
    }
    if (s.allOf) {
      for (const b of s.allOf) visit(b);
      return;
    }
    let types = s.type === undefined ? [] : Array.isArray(s.type) ? [...s.type] : [s.type];
    const values = s.enum ?? (s.const !== undefined ? [s.const] : undefined);
    if (types.length === 0 && values) types = [...new Set(values.map((v) => (v === null ? 'null' : typeof v === 'number' ? 'number' : typeof v)))];
    if (types.length === 0 && s.properties) types = ['object'];
    if (types.length === 0) types = ['any'];
    if (types.includes('null')) shape.nullable = true;
    const nonNull = types.filter((t) => t !== 'null');
    if (nonNull.length === 0) return;
    shape.branches.push(s);
    for (const t of nonNull) shape.types.add(t);
    if (values) {
      for (const v of values) if (v !== null) shape.enumValues?.add(v);
    } else {
      allEnums = false;
    }
    if (nonNull.includes('object')) shape.objects.push(s);
    if (nonNull.includes('array')) shape.items.push(s.items ?? {});
  };
  visit(schema);
  if (!allEnums || shape.enumValues?.size === 0) shape.enumValues = undefined;
  return shape;
}

function typeText(shape: Shape): string {
  const parts = [...shape.types].sort();
  if (shape.nullable) parts.push('null');
  return parts.join('|') || '(nothing)';
}

/** Whether a value of JSON type `t` is accepted by a schema whose types are `accepting`. */
function accepts(accepting: Set<string>, t: string): boolean {
  return accepting.has('any') || accepting.has(t) || (t === 'integer' && accepting.has('number'));
}

function lowest(branches: Schema[], key: 'minimum' | 'minLength' | 'minItems'): number | undefined {
  const values = branches.map((b) => (key === 'minimum' ? (b.minimum ?? b.exclusiveMinimum) : b[key]));
  return values.some((v) => v === undefined) ? undefined : Math.min(...(values as number[]));
}

function highest(branches: Schema[], key: 'maximum' | 'maxLength' | 'maxItems'): number | undefined {
  const values = branches.map((b) => (key === 'maximum' ? (b.maximum ?? b.exclusiveMaximum) : b[key]));
  return values.some((v) => v === undefined) ? undefined : Math.max(...(values as number[]));
}

class Comparison {
  readonly problems: string[] = [];
  constructor(
    private readonly reference: OpenApiDocument,
    private readonly ours: OpenApiDocument,
  ) {}

  /** Request direction: ours must accept everything the reference accepts. */
  request(where: string, refSchema: Schema | undefined, ourSchema: Schema | undefined, depth = 0, inQuery = false): void {
    const ref = shapeOf(this.reference, refSchema);
    const our = shapeOf(this.ours, ourSchema);
    for (const t of ref.types) {
      if (!accepts(our.types, t)) this.problems.push(`~ ${where}: reference accepts ${typeText(ref)}, ours accepts ${typeText(our)} (no ${t})`);
    }
    // A query string cannot carry JSON null: FastAPI's `Optional[...]` there only means "may be absent".
    if (!inQuery && ref.nullable && !our.nullable && !our.types.has('any')) this.problems.push(`~ ${where}: reference accepts null, ours does not (${typeText(our)})`);
    if (ref.enumValues && our.enumValues) {
      const missing = [...ref.enumValues].filter((v) => !our.enumValues?.has(v));
      if (missing.length > 0) this.problems.push(`~ ${where}: ours rejects reference enum values ${JSON.stringify(missing)}`);
    }
    // Bounds: where the reference sets one, ours must be at least as permissive.
    for (const key of ['minimum', 'minLength', 'minItems'] as const) {
      const r = lowest(ref.branches, key);
      const o = lowest(our.branches, key);
      if (r !== undefined && o !== undefined && o > r) this.problems.push(`~ ${where}: ${key} is ${o} in ours, ${r} in the reference`);
    }
    for (const key of ['maximum', 'maxLength', 'maxItems'] as const) {
      const r = highest(ref.branches, key);
      const o = highest(our.branches, key);
      if (r !== undefined && o !== undefined && o < r) this.problems.push(`~ ${where}: ${key} is ${o} in ours, ${r} in the reference`);
    }
    if (depth > 4) return;
    const refObject = ref.objects.find((o) => o.properties);
    const ourObject = our.objects.find((o) => o.properties) ?? our.objects[0];
    if (refObject?.properties && ourObject) {
      const ourProps = ourObject.properties ?? {};
      const freeForm = ourObject.additionalProperties !== undefined && ourObject.additionalProperties !== false && Object.keys(ourProps).length === 0;
      for (const [name, prop] of Object.entries(refObject.properties)) {
        const path = `${where}.${name}`;
        if (ourProps[name] === undefined) {
          if (!freeForm) this.problems.push(`- ${path}: missing in ours (reference: ${typeText(shapeOf(this.reference, prop))})`);
          continue;
        }
        this.request(path, prop, ourProps[name], depth + 1);
      }
      const refRequired = new Set(refObject.required ?? []);
      const extra = (ourObject.required ?? []).filter((name) => !refRequired.has(name));
      if (extra.length > 0) this.problems.push(`+ ${where}: ours requires ${JSON.stringify(extra)}, the reference does not`);
    }
    const refItems = ref.items[0];
    const ourItems = our.items[0];
    if (refItems && ourItems) this.request(`${where}[]`, refItems, ourItems, depth + 1, inQuery);
  }

  /** Response direction: whatever ours sends must be what the reference's clients expect. */
  response(where: string, exceptionKey: string, refSchema: Schema | undefined, ourSchema: Schema | undefined, depth = 0): void {
    const ref = shapeOf(this.reference, refSchema);
    const our = shapeOf(this.ours, ourSchema);
    if (!ref.types.has('any')) {
      for (const t of our.types) {
        const fits = ref.types.has(t) || (t === 'integer' && ref.types.has('number'));
        if (!fits) this.problems.push(`~ ${where}: ours sends ${typeText(our)}, the reference expects ${typeText(ref)}`);
      }
    }
    if (our.nullable && !ref.nullable && !ref.types.has('any')) this.problems.push(`~ ${where}: ours may send null, the reference expects ${typeText(ref)}`);
    if (ref.enumValues && !PROTOCOL_EXCEPTIONS.responseEnumNotBounded.has(`* ${exceptionKey}`)) {
      const allowedExtra = new Set(PROTOCOL_EXCEPTIONS.extraResponseEnumValues.get(`* ${exceptionKey}`) ?? []);
      if (!our.enumValues) this.problems.push(`~ ${where}: the reference allows only ${JSON.stringify([...ref.enumValues])}, ours is not an enum`);
      else {
        const outside = [...our.enumValues].filter((v) => !ref.enumValues?.has(v) && !allowedExtra.has(String(v)));
        if (outside.length > 0) this.problems.push(`~ ${where}: ours may send ${JSON.stringify(outside)}, not in the reference enum`);
      }
    }
    if (depth > 4) return;
    const refObject = ref.objects.find((o) => o.properties);
    const ourObject = our.objects.find((o) => o.properties) ?? our.objects[0];
    if (refObject?.properties && ourObject) {
      const ourProps = ourObject.properties ?? {};
      const ourRequired = new Set(ourObject.required ?? []);
      const refRequired = new Set(refObject.required ?? []);
      for (const [name, refProp] of Object.entries(refObject.properties)) {
        const path = `${where}.${name}`;
        const key = exceptionKey === 'response' ? `response ${name}` : `${exceptionKey}.${name}`;
        if (ourProps[name] === undefined) {
          // Optional reference properties may be left out; when ours sends one, its type must fit.
          if (refRequired.has(name)) this.problems.push(`- ${path}: required by the reference (${typeText(shapeOf(this.reference, refProp))}), missing in ours`);
          continue;
        }
        if (refRequired.has(name) && !ourRequired.has(name)) this.problems.push(`~ ${path}: required by the reference, optional in ours (may be omitted)`);
        this.response(path, key, refProp, ourProps[name], depth + 1);
      }
    }
    const refItems = ref.items[0];
    const ourItems = our.items[0];
    if (refItems && ourItems) this.response(`${where}[]`, `${exceptionKey}[]`, refItems, ourItems, depth + 1);
  }
}

function jsonSchemaOf(content: Record<string, { schema?: Schema }> | undefined): Schema | undefined {
  return content?.['application/json']?.schema;
}

function successStatus(op: Operation): string | undefined {
  return Object.keys(op.responses ?? {})
    .filter((s) => /^2\d\d$/.test(s))
    .sort()[0];
}

function operationsOf(doc: OpenApiDocument): Array<{ method: string; path: string; op: Operation }> {
  return Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods)
      .filter(([method]) => HTTP_METHODS.includes(method))
      .map(([method, op]) => ({ method, path, op })),
  );
}

/** How our 422 body differs from the reference's `ErrorResponse` (§2.1: `{"errors":[{"param","details"}]}`). */
function compareValidationError(reference: OpenApiDocument, ours: OpenApiDocument, refOp: Operation, ourOp: Operation): string[] {
  const ref422 = jsonSchemaOf(refOp.responses?.['422']?.content);
  if (!ref422) return [];
  const our422 = jsonSchemaOf(ourOp.responses?.['422']?.content);
  if (!our422) return ['- 422 response: ours declares no JSON schema'];
  const cmp = new Comparison(reference, ours);
  cmp.response('422 response', 'error', ref422, our422);
  return cmp.problems;
}

/** Everything that differs for one operation, as `- missing`, `+ extra`, `~ changed` lines. */
function compareOperation(reference: OpenApiDocument, ours: OpenApiDocument, refOp: Operation, ourOp: Operation): string[] {
  const cmp = new Comparison(reference, ours);
  // Parameters: every reference path/query parameter exists in ours, with a compatible type.
  const ourParams = new Map((ourOp.parameters ?? []).map((p) => [`${p.in}:${p.name}`, p]));
  for (const p of refOp.parameters ?? []) {
    if (p.in !== 'query' && p.in !== 'path') continue;
    const mine = ourParams.get(`${p.in}:${p.name}`);
    if (!mine) {
      cmp.problems.push(`- ${p.in} parameter ${p.name}: missing in ours`);
      continue;
    }
    cmp.request(`${p.in} parameter ${p.name}`, p.schema, mine.schema, 0, true);
    if (mine.required && !p.required) cmp.problems.push(`+ ${p.in} parameter ${p.name}: required in ours, optional in the reference`);
  }
  for (const p of ourOp.parameters ?? []) {
    if (p.required && !(refOp.parameters ?? []).some((r) => r.in === p.in && r.name === p.name)) {
      cmp.problems.push(`+ ${p.in} parameter ${p.name}: required in ours, absent from the reference`);
    }
  }
  // Request body.
  const refBody = jsonSchemaOf(refOp.requestBody?.content);
  const ourBody = jsonSchemaOf(ourOp.requestBody?.content);
  if (refBody && !ourBody) cmp.problems.push('- request body: the reference takes a JSON body, ours declares none');
  if (refBody && ourBody) cmp.request('request body', refBody, ourBody);
  if (!refBody && ourBody && ourOp.requestBody?.required) {
    // A body the reference does not send must not be required: clients send none (§2.2 `POST …/auth`).
    const shape = shapeOf(ours, ourBody);
    if (!shape.nullable) cmp.problems.push('+ request body: ours requires a body, the reference sends none');
  }
  // Success response.
  const refStatus = successStatus(refOp);
  const ourStatus = successStatus(ourOp);
  if (refStatus !== ourStatus) cmp.problems.push(`~ success status: reference ${refStatus ?? '(none)'}, ours ${ourStatus ?? '(none)'}`);
  if (refStatus && ourStatus) {
    const refSchema = jsonSchemaOf(refOp.responses?.[refStatus]?.content);
    const ourSchema = jsonSchemaOf(ourOp.responses?.[ourStatus]?.content);
    if (refSchema && !ourSchema) cmp.problems.push(`- ${ourStatus} response: ours declares no JSON schema`);
    if (refSchema && ourSchema) cmp.response(`${ourStatus} response`, 'response', refSchema, ourSchema);
  }
  return cmp.problems;
}

describe('OpenAPI compatibility with the Prime reference', () => {
  let ts: TestServer;
  let ours: OpenApiDocument;
  const references = REFERENCE_FILES.map((file) => ({ file, doc: existsSync(`${REFERENCE_DIR}/${file}`) ? loadReference(file) : undefined }));

  before(async () => {
    ts = await startTestServer();
    const response = await ts.request('GET', '/openapi.json', { key: null });
    assert.equal(response.statusCode, 200, response.body);
    ours = response.json<OpenApiDocument>();
  });

  after(async () => {
    await ts?.close();
  });

  for (const { file, doc: reference } of references) {
    describe(file, { skip: reference === undefined ? `${REFERENCE_DIR}/${file} not present` : false }, () => {
      test('every reference path and method exists in ours', () => {
        const missing = operationsOf(reference as OpenApiDocument)
          .filter(({ method, path }) => ours.paths[path]?.[method] === undefined)
          .map(({ method, path }) => `${method.toUpperCase()} ${path}`);
        assert.deepEqual(missing, [], `operations in ${file} that /openapi.json lacks:\n  ${missing.join('\n  ')}`);
      });

      for (const { method, path, op: refOp } of operationsOf(reference ?? { paths: {} })) {
        test(`${method.toUpperCase()} ${path} is compatible`, (t) => {
          const ourOp = ours.paths[path]?.[method];
          if (!ourOp) {
            t.skip('missing; reported by the path test');
            return;
          }
          const problems = compareOperation(reference as OpenApiDocument, ours, refOp, ourOp);
          assert.deepEqual(problems, [], `${method.toUpperCase()} ${path} differs from ${file}:\n  ${problems.join('\n  ')}`);
        });
      }
    });
  }

  test('422 responses declare the reference ErrorResponse shape', () => {
    const problems: string[] = [];
    for (const { file, doc: reference } of references) {
      if (!reference) continue;
      for (const { method, path, op } of operationsOf(reference)) {
        const ourOp = ours.paths[path]?.[method];
        if (!ourOp) continue;
        for (const problem of compareValidationError(reference, ours, op, ourOp)) problems.push(`${method.toUpperCase()} ${path} (${file}): ${problem}`);
      }
    }
    assert.deepEqual(problems, [], `422 responses differ from the reference ErrorResponse:\n  ${problems.join('\n  ')}`);
  });

  test('gpu_type accepts the names the protocol notes add to the reference enum (§2.3, prime#838)', () => {
    const body = jsonSchemaOf(ours.paths['/api/v1/sandbox']?.post?.requestBody?.content);
    const gpuType = resolve(ours, body).properties?.gpu_type;
    const shape = shapeOf(ours, gpuType);
    assert.ok(shape.enumValues, 'gpu_type is expected to be an enum');
    const missing = PROTOCOL_GPU_TYPES.filter((name) => !shape.enumValues?.has(name));
    assert.deepEqual(missing, []);
  });
});

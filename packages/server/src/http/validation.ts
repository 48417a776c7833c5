import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import * as addFormatsModule from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';
import type { FieldError } from '../errors/api-error.js';

// ajv-formats is CommonJS; its default export arrives nested under ESM interop.
const addFormats = (addFormatsModule as unknown as { default: (ajv: Ajv) => Ajv }).default;

function makeAjv(coerceTypes: boolean | 'array'): Ajv {
  const ajv = new Ajv({ coerceTypes, useDefaults: true, removeAdditional: false, allErrors: true, strict: false });
  addFormats(ajv);
  return ajv;
}

/** Bodies are validated strictly (no type coercion); query strings and path params coerce strings to numbers and booleans. */
const bodyAjv = makeAjv(false);
const queryAjv = makeAjv('array');

/** Fastify's validator compiler with Corral's two ajv instances. */
export const validatorCompiler: FastifySchemaCompiler<Record<string, unknown>> = ({ schema, httpPart }) => {
  const ajv = httpPart === 'body' ? bodyAjv : queryAjv;
  const validate: ValidateFunction = ajv.compile(schema);
  return (data: unknown) => {
    if (validate(data)) return { value: data };
    const error = new Error('validation failed') as Error & { validation: ErrorObject[] };
    error.validation = validate.errors ?? [];
    return { error };
  };
};

function describe(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return 'field required';
    case 'enum':
      return `must be one of: ${(params.allowedValues as unknown[]).join(', ')}`;
    case 'additionalProperties':
      return `unknown field "${String(params.additionalProperty)}"`;
    case 'anyOf':
      return 'does not match any allowed shape';
    default:
      return error.message ?? 'is invalid';
  }
}

/**
 * Turns ajv errors into Prime's `{param, details}` list: one entry per field, the field as a
 * dotted path (`cpu_cores`, `labels.0`, `environment_vars.1BAD`).
 */
export function toFieldErrors(errors: readonly ErrorObject[], context: string | undefined): FieldError[] {
  // A nullable field that fails reports its non-null branch's error plus "must be null" and an
  // anyOf summary; those two say nothing useful when a more specific error exists.
  const isNoise = (e: ErrorObject): boolean =>
    e.keyword === 'anyOf' || (e.keyword === 'type' && (e.params as { type?: string }).type === 'null');
  const specificErrors = errors.filter((e) => !isNoise(e));
  const byParam = new Map<string, ErrorObject[]>();
  for (const error of specificErrors.length > 0 ? specificErrors : errors) {
    const params = error.params as Record<string, unknown>;
    const segments = error.instancePath.split('/').filter(Boolean).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (error.keyword === 'required') segments.push(String(params.missingProperty));
    if (error.keyword === 'propertyNames' || error.propertyName !== undefined) segments.push(String(error.propertyName ?? params.propertyName ?? ''));
    let param = segments.join('.');
    if (param === '') param = context === 'body' || context === undefined ? 'body' : context;
    const list = byParam.get(param) ?? [];
    list.push(error);
    byParam.set(param, list);
  }
  const result: FieldError[] = [];
  for (const [param, list] of byParam) {
    const chosen = list[0];
    if (chosen) result.push({ param, details: describe(chosen) });
  }
  return result;
}

import type { JsonSchema } from './codegen/openapi-to-ts.js';

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function matchesType(expected: string, value: unknown): boolean {
  const actual = typeOf(value);
  if (expected === 'number') return actual === 'number' || actual === 'integer';
  return actual === expected;
}

/**
 * Checks a value against a compact schema (types, required fields, items, anyOf) and returns the
 * problems found, as `path: expected X, got Y`. Extra fields are allowed.
 */
export function validateSchema(schema: JsonSchema, value: unknown, path = '$', problems: string[] = []): string[] {
  if (problems.length >= 5) return problems;
  if (schema.anyOf) {
    const branches = schema.anyOf.map((s) => validateSchema(s, value, path, []));
    if (!branches.some((b) => b.length === 0)) problems.push(branches[0]?.[0] ?? `${path}: matches no allowed shape`);
    return problems;
  }
  if (schema.type && !matchesType(schema.type, value)) {
    problems.push(`${path}: expected ${schema.type}, got ${typeOf(value)}`);
    return problems;
  }
  if (typeOf(value) === 'object') {
    const record = value as Record<string, unknown>;
    for (const name of schema.required ?? []) if (!(name in record)) problems.push(`${path}.${name}: missing`);
    for (const [name, sub] of Object.entries(schema.properties ?? {})) {
      if (record[name] !== undefined) validateSchema(sub, record[name], `${path}.${name}`, problems);
    }
    if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
      for (const [name, v] of Object.entries(record)) {
        if (!(name in (schema.properties ?? {}))) validateSchema(schema.additionalProperties, v, `${path}.${name}`, problems);
      }
    }
  } else if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => validateSchema(schema.items as JsonSchema, item, `${path}[${i}]`, problems));
  }
  return problems;
}

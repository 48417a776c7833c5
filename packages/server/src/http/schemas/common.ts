import Type, { type TSchema, type TUnion, type TNull, type TUnsafe } from 'typebox';

/** `T | null`, as FastAPI's `Optional[...]` renders it. */
export function Nullable<T extends TSchema>(schema: T): TUnion<[T, TNull]> {
  return Type.Union([schema, Type.Null()]);
}

/** A string limited to the given values, rendered as a JSON-schema `enum`. */
export function StringEnum<const T extends readonly string[]>(values: T, options: Record<string, unknown> = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** A `{sandbox_id}` path parameter. */
export const SandboxIdParams = Type.Object({ sandbox_id: Type.String({ minLength: 1, maxLength: 128 }) });

/** `{success, message}`, the shape of Prime's delete responses. */
export const SuccessResponse = Type.Object({ success: Type.Boolean(), message: Type.String() });

/** Corral's error body: `detail` (what FastAPI clients read), a stable `code`, and per-field `errors` on 422. */
export const ErrorBody = Type.Object({
  detail: Type.String(),
  code: Type.String(),
  errors: Type.Optional(Type.Array(Type.Object({ param: Type.String(), details: Type.String() }))),
});

/** A 422 body: `errors` always names each invalid field (Prime's `ErrorResponse`). */
export const ValidationErrorBody = Type.Object({
  detail: Type.String(),
  code: Type.String(),
  errors: Type.Array(Type.Object({ param: Type.String(), details: Type.String() })),
});

/** Standard error responses every authenticated route can return. */
export const ERROR_RESPONSES = {
  401: ErrorBody,
  404: ErrorBody,
  422: ValidationErrorBody,
  429: ErrorBody,
} as const;

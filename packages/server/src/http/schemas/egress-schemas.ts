import Type, { type Static } from 'typebox';
import { EGRESS_LOG_DEFAULT_LIMIT, EGRESS_LOG_MAX_LIMIT } from '../../services/egress-service.js';
import { Nullable, StringEnum } from './common.js';

/** One list entry as requests carry it; its syntax is checked by the service (422 naming the entry). */
export const EgressEntry = Type.String({ maxLength: 512 });

/** `SandboxEgressPolicy`: at most one list non-null; `[]` allow list is no egress, `[]` deny list is open. */
export const EgressPolicyBody = Type.Object({
  allowlist: Type.Optional(Nullable(Type.Array(EgressEntry))),
  denylist: Type.Optional(Nullable(Type.Array(EgressEntry))),
});
export type EgressPolicyBody = Static<typeof EgressPolicyBody>;

/** `EgressPolicyStatus`, as the Prime SDK parses it. */
export const EgressPolicyStatusResponse = Type.Object({
  policy: Type.Object({ allowlist: Nullable(Type.Array(Type.String())), denylist: Nullable(Type.Array(Type.String())) }),
  generation: Type.Integer(),
  applied_generation: Type.Integer(),
  applied: Type.Boolean(),
});

/** Query of `GET /sandbox/{id}/egress-log`. */
export const EgressLogQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: EGRESS_LOG_MAX_LIMIT, default: EGRESS_LOG_DEFAULT_LIMIT })),
});
export type EgressLogQuery = Static<typeof EgressLogQuery>;

/** Corral's egress log: recent DNS answers and connection attempts, oldest first. */
export const EgressLogResponse = Type.Object({
  entries: Type.Array(
    Type.Object({
      at: Type.String({ description: 'ISO-8601 time' }),
      kind: StringEnum(['dns', 'connect'] as const),
      destination: Type.String({ description: 'the name asked for (dns) or the address connected to (connect)' }),
      port: Nullable(Type.Integer()),
      protocol: Type.String(),
      verdict: StringEnum(['allowed', 'denied'] as const),
      answers: Type.Optional(Type.Array(Type.String())),
    }),
  ),
});

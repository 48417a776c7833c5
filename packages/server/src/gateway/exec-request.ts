import { invalid } from '../errors/gateway-error.js';
import { topLevelRawValues } from './raw-json.js';

/** A JSON request body with its source text, as the gateway's JSON parser produces it. */
export interface RawJsonBody {
  raw: string;
  value: unknown;
}

/** A validated `POST …/exec` request. */
export interface ExecBody {
  command: string;
  workingDir: string | undefined;
  env: Record<string, string>;
  timeoutSeconds: number;
  user: string | undefined;
}

/** Exec timeout when the request gives none, seconds (the Prime SDK's default). */
export const DEFAULT_EXEC_TIMEOUT_SECONDS = 300;

/** `root`, `1000`, `1000:1000`, `app:staff`: what `docker exec -u` accepts. */
const USER_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}(:[A-Za-z0-9_][A-Za-z0-9._-]{0,63})?$/;
const ENV_NAME_PATTERN = /^[^=\0]+$/;

function isRawJsonBody(body: unknown): body is RawJsonBody {
  return typeof body === 'object' && body !== null && 'raw' in body && typeof (body as RawJsonBody).raw === 'string';
}

/**
 * Validates an exec request. `timeout` must be an integer in the raw JSON (Prime's sidecar reads
 * it as u64, so `10.0` is refused even though `JSON.parse` cannot tell it from `10`), from 1 to
 * `maxTimeoutSeconds`; null or absent means 300. Throws a 422 `GatewayError` naming the problem.
 */
export function parseExecBody(body: unknown, maxTimeoutSeconds: number): ExecBody {
  if (!isRawJsonBody(body)) throw invalid('The request body must be a JSON object (Content-Type: application/json)');
  const value = body.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('The request body must be a JSON object');
  const fields = value as Record<string, unknown>;

  const command = fields.command;
  if (typeof command !== 'string') throw invalid('command: must be a string');
  if (command.includes('\0')) throw invalid('command: must not contain NUL bytes');

  let timeoutSeconds = DEFAULT_EXEC_TIMEOUT_SECONDS;
  for (const raw of topLevelRawValues(body.raw, 'timeout')) {
    if (raw !== 'null' && !/^-?(0|[1-9][0-9]*)$/.test(raw)) {
      throw invalid(`timeout: must be an integer number of seconds, got ${raw.slice(0, 40)}`);
    }
  }
  if (fields.timeout !== undefined && fields.timeout !== null) {
    const timeout = fields.timeout;
    if (typeof timeout !== 'number' || !Number.isSafeInteger(timeout)) throw invalid('timeout: must be an integer number of seconds');
    if (timeout < 1 || timeout > maxTimeoutSeconds) throw invalid(`timeout: must be from 1 to ${maxTimeoutSeconds} seconds, got ${timeout}`);
    timeoutSeconds = timeout;
  }

  let workingDir: string | undefined;
  if (fields.working_dir !== undefined && fields.working_dir !== null && fields.working_dir !== '') {
    if (typeof fields.working_dir !== 'string') throw invalid('working_dir: must be a string or null');
    if (!fields.working_dir.startsWith('/') || fields.working_dir.includes('\0')) throw invalid('working_dir: must be an absolute path');
    workingDir = fields.working_dir;
  }

  const env: Record<string, string> = {};
  if (fields.env !== undefined && fields.env !== null) {
    if (typeof fields.env !== 'object' || Array.isArray(fields.env)) throw invalid('env: must be an object of strings or null');
    for (const [name, v] of Object.entries(fields.env as Record<string, unknown>)) {
      if (!ENV_NAME_PATTERN.test(name)) throw invalid(`env: invalid variable name ${JSON.stringify(name.slice(0, 64))}`);
      if (typeof v !== 'string') throw invalid(`env.${name}: must be a string`);
      if (v.includes('\0')) throw invalid(`env.${name}: must not contain NUL bytes`);
      env[name] = v;
    }
  }

  let user: string | undefined;
  if (fields.user !== undefined && fields.user !== null && fields.user !== '') {
    if (typeof fields.user !== 'string' || !USER_PATTERN.test(fields.user)) {
      throw invalid('user: must be a user name or uid, optionally with ":group"');
    }
    user = fields.user;
  }
  return { command, workingDir, env, timeoutSeconds, user };
}

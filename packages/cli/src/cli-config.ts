import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/** What `corral login` stores. */
export interface CliConfigFile {
  api_url?: string;
  api_key?: string;
}

/** `$XDG_CONFIG_HOME/corral/config.json`, else `~/.config/corral/config.json`. */
export function configFilePath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(env.HOME ?? homedir(), '.config');
  return join(base, 'corral', 'config.json');
}

/** The stored login, or an empty object when there is none (or it is unreadable). */
export function readConfigFile(env: NodeJS.ProcessEnv = process.env): CliConfigFile {
  try {
    const parsed = JSON.parse(readFileSync(configFilePath(env), 'utf8')) as unknown;
    if (typeof parsed !== 'object' || parsed === null) return {};
    const { api_url, api_key } = parsed as Record<string, unknown>;
    return { ...(typeof api_url === 'string' ? { api_url } : {}), ...(typeof api_key === 'string' ? { api_key } : {}) };
  } catch {
    return {};
  }
}

/** Writes the login with mode 0600 (the directory 0700); returns the path. */
export function writeConfigFile(config: CliConfigFile, env: NodeJS.ProcessEnv = process.env): string {
  const path = configFilePath(env);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

/** Where the CLI talks to and with which key. */
export interface ApiTarget {
  baseUrl: string;
  apiKey: string | undefined;
}

/**
 * Resolves the API target from flags, then `CORRAL_*`, then the Prime SDK's variables, then the
 * file `corral login` writes, then `http://127.0.0.1:8080`.
 */
export function resolveTarget(options: { apiUrl?: string; apiKey?: string }, env: NodeJS.ProcessEnv = process.env): ApiTarget {
  const set = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  const file = readConfigFile(env);
  const raw = set(options.apiUrl) ?? set(env.CORRAL_API_URL) ?? set(env.PRIME_API_BASE_URL) ?? set(env.PRIME_BASE_URL) ?? set(file.api_url) ?? 'http://127.0.0.1:8080';
  return {
    baseUrl: raw.replace(/\/+$/, '').replace(/\/api\/v1$/, ''),
    apiKey: set(options.apiKey) ?? set(env.CORRAL_API_KEY) ?? set(env.PRIME_API_KEY) ?? set(file.api_key),
  };
}

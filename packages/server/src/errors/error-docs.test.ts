import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { SETTINGS } from '../config.js';
import { API_ERRORS, CONNECT_STATUS, GATEWAY_ERRORS, RUNTIME_FAILURES, STREAM_ERRORS } from './error-codes.js';

const root = new URL('../../../../', import.meta.url);
const doc = (): string => readFileSync(new URL('docs/errors.md', root), 'utf8');

/** A table row's start: `| \`code\` | cell | cell |`. */
function row(...cells: string[]): RegExp {
  const escaped = cells.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^\\| \`${escaped[0]}\` \\| ${escaped.slice(1).join(' \\| ')} \\|`, 'm');
}

it('documents every control-plane code with its status in docs/errors.md', () => {
  const text = doc();
  for (const [code, spec] of Object.entries(API_ERRORS)) {
    const connect = 'connect' in spec ? `\`${String(spec.connect)}\`` : '—';
    assert.match(text, row(code, String(spec.status), connect), `docs/errors.md has no row for ${code} (${spec.status}, ${connect})`);
  }
});

it('documents every gateway code with its status and Connect code', () => {
  const text = doc();
  for (const [code, spec] of Object.entries(GATEWAY_ERRORS)) {
    assert.match(text, row(code, String(spec.status), `\`${spec.connect}\``), `docs/errors.md has no row for ${code} (${spec.status}, ${spec.connect})`);
  }
});

it('documents every Connect code with its status', () => {
  const text = doc();
  for (const [code, status] of Object.entries(CONNECT_STATUS)) {
    assert.match(text, row(code, String(status)), `docs/errors.md has no row for Connect code ${code} (${status})`);
  }
});

it('documents every streaming-exec code with its close code', () => {
  const text = doc();
  for (const [code, spec] of Object.entries(STREAM_ERRORS)) {
    const close = spec.close === null ? '—' : String(spec.close);
    assert.match(text, row(code, close), `docs/errors.md has no row for streaming-exec code ${code} (${close})`);
  }
});

it('documents every driver failure kind with the codes it maps to', () => {
  const text = doc();
  for (const [kind, spec] of Object.entries(RUNTIME_FAILURES)) {
    assert.match(text, row(kind, `\`${spec.gateway}\``, `\`${spec.startErrorType}\``), `docs/errors.md has no row for driver failure ${kind}`);
  }
});

it('documents every setting in the README', () => {
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  for (const setting of SETTINGS) assert.ok(readme.includes(`\`${setting.env}\``), `README.md does not mention ${setting.env}`);
});

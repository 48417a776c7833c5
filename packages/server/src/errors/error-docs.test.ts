import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { SETTINGS } from '../config.js';
import { ERROR_STATUS } from './error-codes.js';

const root = new URL('../../../../', import.meta.url);

it('documents every error code with its status in docs/errors.md', () => {
  const doc = readFileSync(new URL('docs/errors.md', root), 'utf8');
  for (const [code, status] of Object.entries(ERROR_STATUS)) {
    assert.match(doc, new RegExp(`\\| \`${code}\` \\| ${status} \\|`), `docs/errors.md has no row for ${code} (${status})`);
  }
});

it('documents every setting in the README', () => {
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  for (const setting of SETTINGS) assert.ok(readme.includes(`\`${setting.env}\``), `README.md does not mention ${setting.env}`);
});

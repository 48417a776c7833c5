import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startTestServer } from '@corral/server/testing';
import { generateApiModule, type OpenApiDocument } from '../codegen/openapi-to-ts.js';
import { validateSchema } from '../validate.js';
import { RESPONSE_SCHEMAS } from './api.js';

describe('SDK types against the server\'s /openapi.json', () => {
  it('src/generated/api.ts is what the live server\'s OpenAPI document generates', async () => {
    const t = await startTestServer();
    try {
      const url = await t.server.listen();
      const doc = (await (await fetch(`${url}/openapi.json`)).json()) as OpenApiDocument;
      const committed = readFileSync(fileURLToPath(new URL('./api.ts', import.meta.url)), 'utf8');
      assert.equal(
        committed,
        generateApiModule(doc),
        'the server\'s schemas changed: run `node --conditions=development --import tsx packages/sdk/scripts/generate-types.ts` and fix what no longer compiles',
      );
    } finally {
      await t.close();
    }
  });

  it('the runtime check accepts real answers and names the fields of a wrong one', async () => {
    const t = await startTestServer();
    try {
      const created = await t.request('POST', '/api/v1/sandbox', { body: { name: 'v', docker_image: 'busybox' } });
      const schema = RESPONSE_SCHEMAS.GetSandbox;
      assert.ok(schema);
      assert.deepEqual(validateSchema(schema, created.json()), []);
      const broken: Record<string, unknown> = { ...created.json<Record<string, unknown>>(), cpuCores: '1', labels: [1] };
      delete broken.status;
      const problems = validateSchema(schema, broken);
      assert.ok(problems.includes('$.status: missing'), problems.join());
      assert.ok(problems.includes('$.cpuCores: expected number, got string'), problems.join());
      assert.ok(problems.includes('$.labels[0]: expected string, got integer'), problems.join());
    } finally {
      await t.close();
    }
  });
});

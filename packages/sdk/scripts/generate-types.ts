/**
 * Regenerates packages/sdk/src/generated/api.ts from the OpenAPI document of an in-process server
 * (runtime `none`, nothing listens). Run from the repo root:
 *
 *   node --conditions=development --import tsx packages/sdk/scripts/generate-types.ts
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startTestServer } from '../../server/src/testing/test-server.js';
import { generateApiModule, type OpenApiDocument } from '../src/codegen/openapi-to-ts.js';

const target = fileURLToPath(new URL('../src/generated/api.ts', import.meta.url));
const server = await startTestServer();
try {
  const response = await server.request('GET', '/openapi.json', { key: null });
  if (response.statusCode !== 200) throw new Error(`GET /openapi.json answered ${response.statusCode}`);
  writeFileSync(target, generateApiModule(response.json<OpenApiDocument>()));
  console.log(`wrote ${target}`);
} finally {
  await server.close();
}

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ListeningServer, dockerMissing, needDocker, startServer } from './testing/sdk-test-support.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DOCS = ['docs/sdk.md', 'packages/sdk/README.md'];
const IMAGE = 'python:3.11-slim';

/** The fenced blocks tagged `ts test` in a Markdown file. */
function testBlocks(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(/^```ts test\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');
}

describe('examples in the SDK docs run as written', { concurrency: true, timeout: 120_000 }, () => {
  let server: ListeningServer | undefined;
  const dir = mkdtempSync(join(ROOT, 'packages/sdk/.doc-test-'));
  before(async () => {
    if (!dockerMissing(IMAGE)) server = await startServer();
  });
  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (const file of DOCS) {
    testBlocks(file).forEach((code, index) => {
      it(`${file} block ${index + 1}`, async (t) => {
        if (!needDocker(t, IMAGE) || !server) return;
        const path = join(dir, `${file.replace(/\W/g, '_')}_${index}.ts`);
        writeFileSync(path, code);
        const child = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', path], {
          cwd: ROOT,
          env: { ...process.env, CORRAL_API_URL: server.url, CORRAL_API_KEY: server.t.adminKey },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (c: Buffer) => (output += c));
        child.stderr.on('data', (c: Buffer) => (output += c));
        const code_ = await new Promise<number | null>((resolve) => child.on('close', resolve));
        assert.equal(code_, 0, output);
      });
    });
  }
  it('finds the examples', () => assert.ok(DOCS.every((f) => testBlocks(f).length > 0)));
});

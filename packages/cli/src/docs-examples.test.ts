import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { dockerMissing, type ListeningTestServer, needNothingMissing, startListeningServer } from '@corral/server/testing';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
const DOCS = ['docs/cli.md'];

/** The fenced blocks tagged `sh test` in a Markdown file. */
function shellBlocks(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(/^```sh test\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');
}

describe('shell examples in the CLI docs run as written', { timeout: 180_000 }, () => {
  let server: ListeningTestServer | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'corral-cli-docs-'));
  before(async () => {
    if (dockerMissing() === undefined) server = await startListeningServer('clidocs');
    // `corral` on the PATH, as an installed CLI would be.
    writeFileSync(join(dir, 'corral'), `#!/bin/sh\nexec "${process.execPath}" --conditions=development --import "${import.meta.resolve('tsx')}" "${MAIN}" "$@"\n`);
    chmodSync(join(dir, 'corral'), 0o755);
  });
  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const file of DOCS) {
    shellBlocks(file).forEach((script, index) => {
      it(`${file} block ${index + 1}`, async (t) => {
        if (!needNothingMissing(t, dockerMissing()) || !server) return;
        const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
          cwd: dir,
          env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ''}`, CORRAL_API_URL: server.url, CORRAL_API_KEY: server.t.adminKey, HOME: dir },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (c: Buffer) => (output += c));
        child.stderr.on('data', (c: Buffer) => (output += c));
        const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
        assert.equal(code, 0, output);
      });
    });
  }
  it('finds the examples', () => assert.ok(DOCS.every((f) => shellBlocks(f).length > 0)));
});

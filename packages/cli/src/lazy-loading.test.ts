import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

/** The installed entry point (dist/, built by `tsc -b` before the CLI tests run). */
const BIN = fileURLToPath(new URL('../bin/corral.js', import.meta.url));

/** Module hooks that refuse to resolve the SDK, the server and `ws`. */
const HOOKS = `export async function resolve(specifier, context, next) {
  if (/^(@corral\\/(sdk|server)|ws)$/.test(specifier)) throw new Error('blocked import of ' + specifier);
  return next(specifier, context);
}`;
const REGISTER = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}));`;

/** Runs the built CLI with the SDK, the server and `ws` unloadable. */
function runBlocked(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(REGISTER)}`, BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, CORRAL_API_URL: 'http://127.0.0.1:1', CORRAL_API_KEY: 'x' },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('the CLI loads a command’s code only when it runs', () => {
  it('registers every command, with its options and help, without loading the SDK, the server or ws', () => {
    for (const args of [['--version'], ['--help'], ['sandbox', '--help'], ['sandbox', 'list', '--help'], ['users', 'quota', '--help'], ['tunnel', 'start', '--help'], ['images', 'build', '--help']]) {
      const result = runBlocked(args);
      assert.equal(result.status, 0, `corral ${args.join(' ')}: ${result.stderr}`);
      assert.notEqual(result.stdout, '', `corral ${args.join(' ')} printed nothing`);
    }
    assert.match(runBlocked(['sandbox', 'create', '--help']).stdout, /--idle-timeout-minutes <n>[\s\S]*--no-network/);
  });

  it('loads the SDK when a command runs (the hooks do block it)', () => {
    const result = runBlocked(['sandbox', 'list']);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /blocked import of @corral\/sdk/);
  });
});

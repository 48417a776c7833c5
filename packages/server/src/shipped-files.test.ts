import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const TSC = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
const PACKAGES = ['server', 'sdk', 'cli'];

/** Test and benchmark code, by path inside a package's src/ (or dist/). */
const TEST_OR_BENCH = [
  /\.test\.(ts|js|d\.ts)$/,
  /(^|\/)testing\//,
  /test-support\./,
  /-test-client\./,
  /(^|\/)runtime\/conformance\//,
  /(^|\/)store\/store-(suite|bench|crash-child)\./,
  /(^|\/)runtime\/oci\/bench-create\./,
];

const isTestOrBench = (path: string): boolean => TEST_OR_BENCH.some((pattern) => pattern.test(path));

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

// `tsc -b packages/server packages/sdk packages/cli` (npm run build) emits dist/ from each package's
// tsconfig.json; tests and benchmarks are typechecked by tsconfig.test.json and never ship.
describe('what the packages ship', { concurrency: true }, () => {
  for (const name of PACKAGES) {
    it(`the ${name} build compiles no test or bench file, not even through an import`, async () => {
      const dir = join(REPO, 'packages', name);
      const { stdout } = await promisify(execFile)(process.execPath, [TSC, '-p', dir, '--listFilesOnly'], { maxBuffer: 64 * 1024 * 1024 });
      const own = stdout
        .split('\n')
        .filter((file) => file.startsWith(join(dir, 'src')))
        .map((file) => relative(join(dir, 'src'), file));
      assert.ok(own.includes('index.ts'), `the build lists ${own.length} files of packages/${name}/src`);
      assert.deepEqual(own.filter(isTestOrBench), []);
    });

    it(`packages/${name}/dist holds no test or bench output`, (t) => {
      const dist = join(REPO, 'packages', name, 'dist');
      if (!existsSync(dist)) {
        t.skip('not built');
        return;
      }
      assert.deepEqual(filesUnder(dist).filter(isTestOrBench), []);
    });
  }
});

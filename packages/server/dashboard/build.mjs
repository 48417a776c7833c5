// Bundles the browser dashboard (docs/dashboard.md) with esbuild: src/main.ts and styles.css
// (xterm.js's CSS included) into content-hashed, minified files (the terminal's xterm.js in a chunk
// loaded on demand), and index.html pointing at them.
// Writes packages/server/dist/dashboard/ unless `--out DIR` is given; prints the sizes.
//
//   node packages/server/dashboard/build.mjs [--out DIR]
/* global process, console */
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const outIndex = process.argv.indexOf('--out');
const out = resolve(outIndex >= 0 ? process.argv[outIndex + 1] : join(here, '..', 'dist', 'dashboard'));

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });
const result = await build({
  entryPoints: { app: join(here, 'src', 'main.ts'), style: join(here, 'styles.css') },
  bundle: true,
  minify: true,
  format: 'esm',
  // The terminal (xterm.js) is a chunk of its own, loaded when a terminal is opened.
  splitting: true,
  target: ['chrome110', 'firefox110', 'safari16'],
  outdir: join(out, 'assets'),
  entryNames: '[name]-[hash]',
  chunkNames: '[name]-[hash]',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});
const outputs = Object.keys(result.metafile.outputs).map((file) => basename(file));
const js = outputs.find((f) => f.startsWith('app-') && f.endsWith('.js'));
const css = outputs.find((f) => f.startsWith('style-') && f.endsWith('.css'));
if (!js || !css) throw new Error(`dashboard build: unexpected outputs ${outputs.join(', ')}`);
writeFileSync(join(out, 'index.html'), readFileSync(join(here, 'index.html'), 'utf8').replace('{{JS}}', js).replace('{{CSS}}', css));

let total = 0;
let totalGzip = 0;
let first = 0;
let firstGzip = 0;
for (const file of readdirSync(join(out, 'assets'))) {
  const path = join(out, 'assets', file);
  const size = statSync(path).size;
  const gzip = gzipSync(readFileSync(path)).length;
  total += size;
  totalGzip += gzip;
  if (!file.startsWith('terminal-')) {
    first += size;
    firstGzip += gzip;
  }
  console.log(`dashboard: ${file} ${(size / 1024).toFixed(1)} KiB (${(gzip / 1024).toFixed(1)} KiB gzip)`);
}
console.log(`dashboard: ${(first / 1024).toFixed(1)} KiB before a terminal is opened (${(firstGzip / 1024).toFixed(1)} KiB gzip)`);
console.log(`dashboard: ${(total / 1024).toFixed(1)} KiB total (${(totalGzip / 1024).toFixed(1)} KiB gzip) in ${out}`);

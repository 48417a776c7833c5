import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { buildRootfs, rootfsKey } from './rootfs.js';
import { absent, missingComponents } from './test-support.js';
import { MissingToolError, requireTool } from './tools.js';

async function entries(path: string): Promise<Map<string, { type: string; linkname?: string; mode?: number }>> {
  const found = new Map<string, { type: string; linkname?: string; mode?: number }>();
  const extract = tar.extract();
  extract.on('entry', (header, body, next) => {
    // The tarball may come from this library or from scripts/build-images.sh (`./`-prefixed names).
    found.set(header.name.replace(/^\.\//, '').replace(/\/$/, ''), { type: header.type ?? 'file', ...(header.linkname ? { linkname: header.linkname } : {}), ...(header.mode !== undefined ? { mode: header.mode } : {}) });
    body.on('end', next);
    body.resume();
  });
  await pipeline(createReadStream(path), extract);
  return found;
}

test('busybox rootfs: static binary, applet links, minimal /etc; cached by content key', async (t) => {
  if (absent(t, await missingComponents(['busybox'], false))) return;
  const dir = await mkdtemp(join(tmpdir(), 'corral-rootfs-test-'));
  try {
    const out = join(dir, 'busybox.tar');
    const first = await buildRootfs('busybox', out);
    assert.equal(first.path, out);
    assert.equal(first.key, await rootfsKey('busybox'));
    assert.match(first.key, /^busybox-v\d+-[0-9a-f]{12}$/);
    assert.equal((await stat(out)).size, (await stat(first.cachedPath)).size);
    const files = await entries(out);
    assert.equal(files.get('bin/busybox')?.type, 'file');
    assert.equal(files.get('bin/busybox')?.mode, 0o755);
    assert.equal(files.get('bin/sh')?.linkname, '/bin/busybox');
    assert.ok(files.has('etc/passwd'));
    assert.equal(files.get('tmp')?.mode, 0o1777);
    const again = await buildRootfs('busybox');
    assert.equal(again.cached, true);
    assert.equal(again.cachedPath, first.cachedPath);
    assert.ok(again.ms < 2000, `cached build took ${again.ms} ms`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a missing tool is named with its Debian package and the script that installs it', () => {
  assert.throws(() => requireTool('corral-no-such-tool'), MissingToolError);
  const message = new MissingToolError('mmdebstrap').message;
  assert.match(message, /mmdebstrap/);
  assert.match(message, /scripts\/build-images\.sh/);
  assert.match(new MissingToolError('htpasswd').message, /apache2-utils/);
});

test('scripts/build-images.sh computes the same content keys as this library', async (t) => {
  if (absent(t, await missingComponents(['busybox'], false))) return;
  const script = fileURLToPath(new URL('../../../../scripts/build-images.sh', import.meta.url));
  const { stdout } = await promisify(execFile)('bash', [script, '--print-keys']);
  const keys = Object.fromEntries(stdout.trim().split('\n').map((line) => line.split(' ') as [string, string]));
  assert.deepEqual(keys, { python: await rootfsKey('python'), busybox: await rootfsKey('busybox') });
});

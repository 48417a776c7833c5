import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { RuntimeError, type ImagePullReport } from '../runtime.js';
import { ImageStore } from './image-store.js';
import { localRegistryAnswers } from '../../testing/local-registries.js';

const REGISTRY = '127.0.0.1:5000';
const AUTH_REGISTRY = '127.0.0.1:5001';

/** A tar archive built in memory. */
async function makeTar(entries: { name: string; type?: 'file' | 'directory'; content?: string; mode?: number }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === 'directory') pack.entry({ name: e.name, type: 'directory', mode: e.mode ?? 0o755 });
    else pack.entry({ name: e.name, mode: e.mode ?? 0o644 }, e.content ?? '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A two-layer image (gzip, then zstd) whose second layer deletes a file and makes a directory opaque. */
async function whiteoutImage(): Promise<{ blobs: Map<string, Buffer>; manifest: Buffer; config: Buffer; index: Buffer }> {
  const layer1 = gzipSync(
    await makeTar([
      { name: 'a/', type: 'directory' },
      { name: 'a/x', content: 'x' },
      { name: 'a/y', content: 'y' },
      { name: 'b/', type: 'directory' },
      { name: 'b/old', content: 'old' },
      { name: 'bin/', type: 'directory' },
    ]),
  );
  const plain2 = await makeTar([
    { name: 'a/', type: 'directory' },
    { name: 'a/.wh.x' },
    { name: 'b/', type: 'directory' },
    { name: 'b/.wh..wh..opq' },
    { name: 'b/new', content: 'new' },
  ]);
  const layer2 = execFileSync('zstd', ['-q', '-c'], { input: plain2 });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin', 'X=1'], Cmd: ['sh'], WorkingDir: '/a' } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${sha(layer1)}`, size: layer1.length },
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', digest: `sha256:${sha(layer2)}`, size: layer2.length },
      ],
    }),
  );
  const armManifest = Buffer.from('{"schemaVersion":2,"config":{"digest":"sha256:00"},"layers":[]}');
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(armManifest)}`, size: armManifest.length, platform: { os: 'linux', architecture: 'arm64' } },
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    }),
  );
  const blobs = new Map<string, Buffer>();
  for (const b of [layer1, layer2, config, manifest, armManifest, index]) blobs.set(`sha256:${sha(b)}`, b);
  return { blobs, manifest, config, index };
}

function checkWhiteoutLayers(store: ImageStore, layers: string[]): void {
  assert.equal(layers.length, 2);
  const top = store.layerDir(layers[1] ?? '');
  const wh = lstatSync(join(top, 'a', 'x'));
  assert.ok(wh.isCharacterDevice(), 'a/x is a whiteout char device');
  assert.equal(wh.rdev, 0);
  assert.ok(!existsSync(join(top, 'a', '.wh.x')));
  assert.equal(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'trusted.overlay.opaque', join(top, 'b')]).toString(), 'y');
  assert.ok(!existsSync(join(top, 'b', '.wh..wh..opq')));
  // Stacked by overlayfs: a/x is gone, b holds only the new file.
  const scratch = mkdtempSync(join(tmpdir(), 'corral-ovl-'));
  const merged = join(scratch, 'm');
  mkdirSync(merged);
  const lower = [...layers].reverse().map((l) => store.layerDir(l)).join(':');
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower}`, merged]);
  try {
    assert.deepEqual(readdirSync(join(merged, 'a')).sort(), ['y']);
    assert.deepEqual(readdirSync(join(merged, 'b')).sort(), ['new']);
  } finally {
    execFileSync('umount', [merged]);
    rmSync(scratch, { recursive: true, force: true });
  }
}

describe('oci image store', { concurrency: 1 }, () => {
  let root: string;
  let store: ImageStore;
  // Loopback registries are reached only when listed; tests add their own servers' ports.
  const insecure: string[] = [REGISTRY, AUTH_REGISTRY, '127.0.0.1:1'];
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'corral-images-'));
    store = new ImageStore({ root, insecureRegistries: insecure });
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('pulls anonymously from the local registry, once for concurrent callers', async (t) => {
    if (!(await localRegistryAnswers(REGISTRY))) return t.skip('no registry on 127.0.0.1:5000 (bash scripts/start-registry.sh)');
    const ref = `${REGISTRY}/corral/busybox:latest`;
    const started = performance.now();
    const [a, b] = await Promise.all([store.pull(ref), store.pull(ref)]);
    t.diagnostic(`pull ${(performance.now() - started).toFixed(0)} ms`);
    assert.deepEqual(a, b);
    assert.ok(existsSync(join(store.layerDir(a.layers[0] ?? ''), 'bin', 'busybox')));
    assert.deepEqual(a.config.cmd, ['sh']);
    assert.equal((await store.ensure(ref)).digest, a.digest);
  });

  it('pulls with basic auth, and fails clearly without credentials', async (t) => {
    if (!(await localRegistryAnswers(AUTH_REGISTRY))) return t.skip('no auth registry on 127.0.0.1:5001 (bash scripts/start-registry.sh --auth corral:corral-secret)');
    const ref = `${AUTH_REGISTRY}/private/busybox:latest`;
    await assert.rejects(store.pull(ref), (e: unknown) => e instanceof RuntimeError && e.kind === 'IMAGE_PULL_FAILED' && /credentials/.test(e.message));
    await assert.rejects(store.pull(ref, { username: 'corral', password: 'wrong' }), (e: unknown) => e instanceof RuntimeError && e.kind === 'IMAGE_PULL_FAILED');
    const record = await store.pull(ref, { username: 'corral', password: 'corral-secret' });
    assert.equal(record.layers.length, 1);
  });

  it('reports each registry pull (not cached hits) to onPull: time, bytes downloaded, and failures', async (t) => {
    if (!(await localRegistryAnswers(REGISTRY))) return t.skip('no registry on 127.0.0.1:5000 (bash scripts/start-registry.sh)');
    const fresh = new ImageStore({ root: mkdtempSync(join(tmpdir(), 'corral-images-pull-')), insecureRegistries: insecure });
    const reports: ImagePullReport[] = [];
    const unsubscribe = fresh.onPull((report) => reports.push(report));
    try {
      const ref = `${REGISTRY}/corral/busybox:latest`;
      await Promise.all([fresh.ensure(ref), fresh.ensure(ref)]);
      await fresh.ensure(ref);
      await assert.rejects(fresh.ensure('127.0.0.1:1/corral/nothing:latest'));
      assert.equal(reports.length, 2, `one shared pull and one failure, not the cached hit: ${JSON.stringify(reports)}`);
      const [ok, failed] = reports;
      assert.equal(ok?.ok, true);
      assert.equal(ok?.image, ref);
      assert.ok((ok?.bytes ?? 0) > 100_000, `bytes downloaded: ${ok?.bytes}`);
      assert.ok((ok?.seconds ?? -1) >= 0);
      assert.equal(failed?.ok, false);
      assert.equal(failed?.bytes, 0);
    } finally {
      unsubscribe();
      rmSync(fresh.root, { recursive: true, force: true });
    }
  });

  it('pull failures are IMAGE_PULL_FAILED with the reason', async () => {
    await assert.rejects(store.ensure('127.0.0.1:1/corral/nothing:latest'), (e: unknown) => e instanceof RuntimeError && e.kind === 'IMAGE_PULL_FAILED' && /cannot reach/.test(e.message));
    await assert.rejects(store.ensure('Not A Ref'), (e: unknown) => e instanceof RuntimeError && e.kind === 'IMAGE_PULL_FAILED');
  });

  it('bearer tokens, index platform selection, gzip + zstd layers, whiteouts, digest checks', async () => {
    const image = await whiteoutImage();
    let tokenRequests = 0;
    let corrupt = false;
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/token') {
        tokenRequests++;
        assert.equal(url.searchParams.get('scope'), 'repository:test/img:pull');
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ token: 'tok123' }));
        return;
      }
      if (req.headers.authorization !== 'Bearer tok123') {
        const port = (server.address() as AddressInfo).port;
        res.statusCode = 401;
        res.setHeader('www-authenticate', `Bearer realm="http://127.0.0.1:${port}/token",service="test",scope="repository:test/img:pull"`);
        res.end();
        return;
      }
      const m = /^\/v2\/test\/img\/(manifests|blobs)\/(.+)$/.exec(url.pathname);
      const key = m?.[2] === 'v1' ? `sha256:${sha(image.index)}` : (m?.[2] ?? '');
      let body = image.blobs.get(key);
      if (!body) {
        res.statusCode = 404;
        res.end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
        return;
      }
      if (corrupt && m?.[1] === 'blobs') body = Buffer.concat([body, Buffer.from('x')]);
      if (m?.[1] === 'manifests') res.setHeader('content-type', JSON.parse(body.toString()).mediaType as string);
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    insecure.push(`127.0.0.1:${port}`);
    try {
      const record = await store.pull(`127.0.0.1:${port}/test/img:v1`);
      assert.ok(tokenRequests >= 1);
      assert.equal(record.digest, `sha256:${sha(image.manifest)}`);
      assert.deepEqual(record.config.env, ['PATH=/bin', 'X=1']);
      assert.equal(record.config.workingDir, '/a');
      checkWhiteoutLayers(store, record.layers);
      await assert.rejects(store.pull(`127.0.0.1:${port}/test/img:missing`), (e: unknown) => e instanceof RuntimeError && /404/.test(e.message));
      // A tampered blob is refused.
      for (const l of record.layers) rmSync(store.layerDir(l), { recursive: true });
      await store.remove(`127.0.0.1:${port}/test/img:v1`);
      corrupt = true;
      await assert.rejects(store.pull(`127.0.0.1:${port}/test/img:v1`), (e: unknown) => e instanceof RuntimeError && /mismatch/.test(e.message));
    } finally {
      server.close();
    }
  });

  it('imports OCI layout and docker-save archives, and rootfs tarballs', async () => {
    const image = await whiteoutImage();
    const scratch = mkdtempSync(join(tmpdir(), 'corral-archive-'));
    try {
      // OCI layout.
      const layout = join(scratch, 'layout');
      mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
      for (const [digest, body] of image.blobs) writeFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)), body);
      writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      writeFileSync(
        join(layout, 'index.json'),
        JSON.stringify({ schemaVersion: 2, manifests: [{ digest: `sha256:${sha(image.index)}`, mediaType: 'application/vnd.oci.image.index.v1+json', annotations: { 'org.opencontainers.image.ref.name': 'v2' } }] }),
      );
      execFileSync('tar', ['-C', layout, '-cf', join(scratch, 'oci.tar'), '.']);
      const oci = await store.importArchive(join(scratch, 'oci.tar'), 'local/oci:v2');
      assert.equal(oci.ref, 'docker.io/local/oci:v2');
      checkWhiteoutLayers(store, oci.layers);
      assert.equal((await store.ensure('local/oci:v2')).digest, oci.digest);

      // docker save: uncompressed layer tars named by path.
      const save = join(scratch, 'save');
      mkdirSync(join(save, 'l1'), { recursive: true });
      const layerTar = await makeTar([{ name: 'hello', content: 'world' }]);
      writeFileSync(join(save, 'l1', 'layer.tar'), layerTar);
      writeFileSync(join(save, 'cfg.json'), JSON.stringify({ config: { Cmd: ['/hello'] } }));
      writeFileSync(join(save, 'manifest.json'), JSON.stringify([{ Config: 'cfg.json', RepoTags: ['saved/img:1'], Layers: ['l1/layer.tar'] }]));
      execFileSync('tar', ['-C', save, '-cf', join(scratch, 'save.tar'), '.']);
      const saved = await store.importArchive(join(scratch, 'save.tar'));
      assert.equal(saved.ref, 'docker.io/saved/img:1');
      assert.equal(saved.layers[0], sha(layerTar));
      assert.equal(readFileSync(join(store.layerDir(saved.layers[0] ?? ''), 'hello'), 'utf8'), 'world');

      // Rootfs tarball.
      const rootfs = join(scratch, 'rootfs.tar');
      writeFileSync(rootfs, await makeTar([{ name: 'bin/', type: 'directory' }, { name: 'bin/tool', content: '#!/bin/sh\n', mode: 0o755 }]));
      const imported = await store.importRootfs(rootfs, 'corral-local/rootfs:1');
      assert.deepEqual(imported.config.cmd, ['sh']);
      assert.ok(existsSync(join(store.layerDir(imported.layers[0] ?? ''), 'bin', 'tool')));
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('imports a layout taking known layers from the store without their blobs, and names an image twice (tag)', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'corral-layout-'));
    try {
      const rootfs = join(scratch, 'base.tar');
      writeFileSync(rootfs, await makeTar([{ name: 'base-file', content: 'base' }]));
      const base = await store.importRootfs(rootfs, 'corral-local/base:1');
      const baseHex = base.layers[0] ?? '';
      // A build's result: the base layer under the digest buildah gave it (its blob only a placeholder), and a new layer.
      const top = await makeTar([{ name: 'top-file', content: 'top' }]);
      const baseDigest = `sha256:${'b'.repeat(64)}`;
      const config = Buffer.from(JSON.stringify({ config: { Cmd: ['/top'] }, rootfs: { type: 'layers', diff_ids: [baseDigest, `sha256:${sha(top)}`] } }));
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
          layers: [
            { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: baseDigest, size: 0 },
            { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${sha(top)}`, size: top.length },
          ],
        }),
      );
      const layout = join(scratch, 'layout');
      mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
      for (const body of [config, manifest, top]) writeFileSync(join(layout, 'blobs', 'sha256', sha(body)), body);
      writeFileSync(join(layout, 'blobs', 'sha256', 'b'.repeat(64)), '');
      writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ digest: `sha256:${sha(manifest)}`, mediaType: 'application/vnd.oci.image.manifest.v1+json' }] }));
      const { record, added, blobBytes } = await store.importLayout(layout, 'corral.local/u/built:1', new Map([[baseDigest, baseHex]]));
      assert.deepEqual(record.layers, [baseHex, sha(top)]);
      assert.deepEqual(added, [sha(top)]);
      assert.equal(blobBytes, top.length);
      assert.equal(readFileSync(join(store.layerDir(sha(top)), 'top-file'), 'utf8'), 'top');
      // Without the mapping the placeholder is read, and refused: it is not the layer it names.
      await assert.rejects(store.importLayout(layout, 'corral.local/u/built:2', new Map()), /does not match its digest/);
      const copy = await store.tag(record, 'corral.local/u/renamed:1');
      assert.deepEqual([copy.ref, copy.layers, copy.digest], ['corral.local/u/renamed:1', record.layers, record.digest]);
      assert.equal((await store.get('corral.local/u/built:1'))?.digest, record.digest);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it('gc removes only layers no image or caller still uses', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'corral-gc-'));
    try {
      const keep = join(scratch, 'keep.tar');
      const drop = join(scratch, 'drop.tar');
      const inUse = join(scratch, 'inuse.tar');
      writeFileSync(keep, await makeTar([{ name: 'keep', content: '1' }]));
      writeFileSync(drop, await makeTar([{ name: 'drop', content: '2' }]));
      writeFileSync(inUse, await makeTar([{ name: 'inuse', content: '3' }]));
      const k = await store.importRootfs(keep, 'gc/keep:1');
      const d = await store.importRootfs(drop, 'gc/drop:1');
      const u = await store.importRootfs(inUse, 'gc/inuse:1');
      await store.remove('gc/drop:1');
      await store.remove('gc/inuse:1');
      const removed = await store.gc(u.layers);
      assert.ok(removed.includes(d.layers[0] ?? ''));
      assert.ok(!removed.includes(u.layers[0] ?? ''));
      assert.ok(existsSync(store.layerDir(k.layers[0] ?? '')));
      assert.ok(existsSync(store.layerDir(u.layers[0] ?? '')));
      assert.ok(!existsSync(store.layerDir(d.layers[0] ?? '')));
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});

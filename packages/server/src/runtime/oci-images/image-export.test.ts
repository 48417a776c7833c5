import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { deleteFromRegistry, exportImage } from './image-export.js';
import { ImageStore } from './image-store.js';
import { localRegistryAnswers } from '../../testing/local-registries.js';

const REGISTRY = '127.0.0.1:5000';

interface Entry {
  name: string;
  type?: 'file' | 'directory';
  content?: string;
  uid?: number;
  gid?: number;
  mode?: number;
}

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    const header = { name: e.name, uid: e.uid ?? 0, gid: e.gid ?? 0 };
    if (e.type === 'directory') pack.entry({ ...header, type: 'directory', mode: e.mode ?? 0o755 });
    else pack.entry({ ...header, mode: e.mode ?? 0o644 }, e.content ?? '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** An OCI layout archive of two layers: the second deletes `etc/gone` and makes `data/` opaque. */
async function sourceArchive(dir: string): Promise<string> {
  const layer1 = await makeTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/gone', content: 'bye' },
    { name: 'etc/kept', content: 'kept' },
    { name: 'home/', type: 'directory' },
    { name: 'home/app/', type: 'directory', uid: 1000, gid: 1000, mode: 0o750 },
    { name: 'home/app/owned', content: 'mine', uid: 1000, gid: 1001, mode: 0o600 },
    { name: 'data/', type: 'directory' },
    { name: 'data/old', content: 'old' },
  ]);
  const layer2 = await makeTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/.wh.gone' },
    { name: 'data/', type: 'directory' },
    { name: 'data/.wh..wh..opq' },
    { name: 'data/new', content: 'new', uid: 33, gid: 33 },
  ]);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin', 'X=1'], Cmd: ['sh', '-c', 'true'], WorkingDir: '/home/app', User: '1000' } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
      layers: [layer1, layer2].map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${sha(l)}`, size: l.length })),
    }),
  );
  const layout = join(dir, 'src-layout');
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  for (const blob of [layer1, layer2, config, manifest]) writeFileSync(join(layout, 'blobs', 'sha256', sha(blob)), blob);
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length }] }));
  const archive = join(dir, 'src.tar');
  execFileSync('tar', ['--create', '--file', archive, '--directory', layout, '.']);
  return archive;
}

describe('exportImage', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'corral-export-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('pushes an image of the store to a registry, and a fresh store pulls back its files, owners, deletions and opaque directories', async (t) => {
    if (!(await localRegistryAnswers(REGISTRY))) {
      if (process.env.CI) assert.fail(`the local registry ${REGISTRY} is not running`);
      t.skip(`no registry at ${REGISTRY}`);
      return;
    }
    const source = new ImageStore({ root: join(dir, 'source'), insecureRegistries: [REGISTRY] });
    const record = await source.importArchive(await sourceArchive(dir), 'corral.local/u1/exported:v1');
    const target = `${REGISTRY}/corral-test/export-${randomBytes(4).toString('hex')}:v1`;
    const written = await exportImage(source, record, { kind: 'registry', reference: target }, { workDir: join(dir, 'work'), insecureRegistries: [REGISTRY] });
    assert.match(written.manifestDigest, /^sha256:[0-9a-f]{64}$/);

    const fresh = new ImageStore({ root: join(dir, 'fresh'), insecureRegistries: [REGISTRY] });
    const pulled = await fresh.pull(target);
    assert.equal(pulled.layers.length, 2);
    assert.deepEqual(pulled.config, { env: ['PATH=/bin', 'X=1'], entrypoint: [], cmd: ['sh', '-c', 'true'], workingDir: '/home/app', user: '1000' });
    const [lower, upper] = pulled.layers.map((hex) => fresh.layerDir(hex)) as [string, string];
    assert.equal(readFileSync(join(lower, 'etc', 'kept'), 'utf8'), 'kept');
    assert.equal(readFileSync(join(lower, 'etc', 'gone'), 'utf8'), 'bye');
    const owned = lstatSync(join(lower, 'home', 'app', 'owned'));
    assert.deepEqual([owned.uid, owned.gid, owned.mode & 0o7777], [1000, 1001, 0o600]);
    const home = lstatSync(join(lower, 'home', 'app'));
    assert.deepEqual([home.uid, home.gid, home.mode & 0o7777], [1000, 1000, 0o750]);
    // The deletion is an overlayfs whiteout again, the opaque directory opaque again.
    const whiteout = lstatSync(join(upper, 'etc', 'gone'));
    assert.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0, 'etc/gone is a whiteout in the upper layer');
    const opaque = execFileSync('getfattr', ['--absolute-names', '--only-values', '--name', 'trusted.overlay.opaque', join(upper, 'data')], { encoding: 'utf8' });
    assert.equal(opaque, 'y');
    const fresh33 = lstatSync(join(upper, 'data', 'new'));
    assert.deepEqual([readFileSync(join(upper, 'data', 'new'), 'utf8'), fresh33.uid, fresh33.gid], ['new', 33, 33]);

    // Deleting is best effort: this registry may refuse deletes (405), which is skopeo's error.
    await deleteFromRegistry(target, { workDir: join(dir, 'work'), insecureRegistries: [REGISTRY] }).catch((error: Error) => assert.match(error.message, /skopeo/));
  });

  it('refuses a registry that is not insecure-listed over plain HTTP (TLS is verified by default)', async (t) => {
    if (!(await localRegistryAnswers(REGISTRY))) {
      if (process.env.CI) assert.fail(`the local registry ${REGISTRY} is not running`);
      t.skip(`no registry at ${REGISTRY}`);
      return;
    }
    const source = new ImageStore({ root: join(dir, 'source2'), insecureRegistries: [] });
    const record = await source.importArchive(await sourceArchive(dir), 'corral.local/u1/exported:v2');
    await assert.rejects(
      exportImage(source, record, { kind: 'registry', reference: `${REGISTRY}/corral-test/never:v1` }, { workDir: join(dir, 'work'), insecureRegistries: [] }),
      /skopeo.*(https|tls|HTTP)/i,
    );
  });
});

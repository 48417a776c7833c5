import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import { RuntimeError } from '../runtime.js';
import { parseImageRef } from '../registry/image-ref.js';
import { ImageStore } from '../oci-images/image-store.js';
import { credentialsFor } from '../registry/registry-access-check.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const SECRET_BODY = 'SECRET-BODY-TEXT-do-not-echo';

async function layerOf(entries: { name: string; content?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, mode: 0o644 }, e.content ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return gzipSync(Buffer.concat(chunks));
}

/** An image's blobs, served by {@link FakeRegistry}. */
interface FakeImage {
  manifest: Buffer;
  blobs: Map<string, Buffer>;
}

async function fakeImage(layers: Buffer[], manifestExtra: Record<string, unknown> = {}): Promise<FakeImage> {
  const config = Buffer.from(JSON.stringify({ config: { Cmd: ['sh'] } }));
  const blobs = new Map<string, Buffer>([[sha(config), config]]);
  for (const l of layers) blobs.set(sha(l), l);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(l), size: l.length })),
      ...manifestExtra,
    }),
  );
  return { manifest, blobs };
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => boolean | void;

/** A registry on 127.0.0.1 serving `images` by tag; `handler` may answer a request first. */
class FakeRegistry {
  readonly requests: { path: string; authorization: string | undefined; method: string }[] = [];
  images = new Map<string, FakeImage>();
  handler: Handler = () => false;
  private server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      this.requests.push({ path: url.pathname, authorization: req.headers.authorization, method: req.method ?? '' });
      if (this.handler(req, res, url) === true) return;
      const m = /^\/v2\/([a-z/]+)\/(manifests|blobs)\/(.+)$/.exec(url.pathname);
      const image = this.images.get(`${m?.[1] ?? ''}:${m?.[3] ?? ''}`) ?? [...this.images.values()].find((i) => i.blobs.has(m?.[3] ?? '') || sha(i.manifest) === m?.[3]);
      const body = m?.[2] === 'manifests' ? image?.manifest : image?.blobs.get(m?.[3] ?? '');
      if (!body) {
        res.statusCode = 404;
        res.end(SECRET_BODY);
        return;
      }
      if (m?.[2] === 'manifests') res.setHeader('content-type', 'application/vnd.oci.image.manifest.v1+json');
      res.setHeader('content-length', body.length);
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.port = (this.server?.address() as AddressInfo).port;
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()));
  }
}

function isPullFailure(pattern: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof RuntimeError && e.kind === 'IMAGE_PULL_FAILED', `expected IMAGE_PULL_FAILED, got ${String(e)}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes(SECRET_BODY), `the message quotes a response body: ${e.message}`);
    assert.ok(e.message.length < 400, `the message is not short: ${e.message}`);
    return true;
  };
}

describe('registry pulls against a hostile registry', { concurrency: 1 }, () => {
  let root: string;
  const registry = new FakeRegistry();
  const other = new FakeRegistry();
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'corral-registry-sec-'));
    await registry.start();
    await other.start();
  });
  after(async () => {
    await registry.stop();
    await other.stop();
    rmSync(root, { recursive: true, force: true });
  });

  let n = 0;
  function store(options: { insecure?: string[]; maxImageBytes?: number } = {}): ImageStore {
    return new ImageStore({ root: join(root, `store-${n++}`), insecureRegistries: options.insecure ?? [registry.host, `localhost:${other.port}`], ...(options.maxImageBytes ? { maxImageBytes: options.maxImageBytes } : {}) });
  }

  it('does not reach a loopback registry the operator did not list', async () => {
    registry.images.set('app/img:v1', await fakeImage([await layerOf([{ name: 'f', content: 'x' }])]));
    const before = registry.requests.length;
    await assert.rejects(store({ insecure: [] }).pull(`${registry.host}/app/img:v1`), isPullFailure(/CORRAL_REGISTRY_INSECURE/));
    await assert.rejects(store({ insecure: [] }).pull(`localhost:${registry.port}/app/img:v1`), isPullFailure(/CORRAL_REGISTRY_INSECURE/));
    assert.equal(registry.requests.length, before, 'no request reached the registry');
    // Listed, it works.
    assert.equal((await store().pull(`${registry.host}/app/img:v1`)).layers.length, 1);
  });

  it('does not follow a redirect to an address the operator did not list', async () => {
    registry.handler = (_req, res, url) => {
      if (!url.pathname.includes('/redirected/')) return false;
      res.statusCode = 307;
      res.setHeader('location', `http://${other.host}/v2/x/manifests/v1`);
      res.end();
      return true;
    };
    const before = other.requests.length;
    await assert.rejects(store().pull(`${registry.host}/redirected/img:v1`), isPullFailure(/not reached over plain HTTP/));
    assert.equal(other.requests.length, before);
    registry.handler = () => false;
  });

  it('sends no password to a token realm on another host', async () => {
    registry.images.set('private/img:v1', await fakeImage([await layerOf([{ name: 'f', content: 'p' }])]));
    registry.handler = (req, res) => {
      if (req.headers.authorization === 'Bearer good') return false;
      res.statusCode = 401;
      res.setHeader('www-authenticate', `Bearer realm="http://localhost:${other.port}/token",service="reg"`);
      res.end();
      return true;
    };
    other.handler = (_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ token: 'good' }));
      return true;
    };
    try {
      await assert.rejects(
        store().pull(`${registry.host}/private/img:v1`, { username: 'alice', password: 'hunter2' }),
        isPullFailure(/token service to another host/),
      );
      for (const r of other.requests) assert.ok(!(r.authorization ?? '').startsWith('Basic'), 'the realm on another host got the password');
    } finally {
      registry.handler = () => false;
      other.handler = () => false;
    }
  });

  it('refuses a 10 MB manifest, too many layers and images over the size cap, leaving nothing in the layer cache', async () => {
    const huge = Buffer.alloc(10 * 1024 * 1024, 0x20);
    registry.images.set('big/manifest:v1', { manifest: huge, blobs: new Map() });
    await assert.rejects(store().pull(`${registry.host}/big/manifest:v1`), isPullFailure(/manifest is larger than 4194304 bytes/));

    const one = await layerOf([{ name: 'f' }]);
    const many = await fakeImage([one]);
    const parsed = JSON.parse(many.manifest.toString()) as { layers: unknown[] };
    many.manifest = Buffer.from(JSON.stringify({ ...parsed, layers: Array.from({ length: 200 }, () => parsed.layers[0]) }));
    registry.images.set('many/layers:v1', many);
    await assert.rejects(store().pull(`${registry.host}/many/layers:v1`), isPullFailure(/200 layers, more than 128/));

    // Declared sizes over the cap; then a layer that lies about its size and a bomb that decompresses past the cap.
    const capped = store({ maxImageBytes: 1024 * 1024 });
    const bigLayer = await layerOf([{ name: 'big', content: 'x'.repeat(3 * 1024 * 1024) }]);
    registry.images.set('big/layer:v1', await fakeImage([bigLayer]));
    await assert.rejects(capped.pull(`${registry.host}/big/layer:v1`), isPullFailure(/more than the 1048576 allowed|larger than 1048576 bytes/));
    const liar = await fakeImage([bigLayer]);
    const liarManifest = JSON.parse(liar.manifest.toString()) as { layers: { size: number }[] };
    for (const l of liarManifest.layers) l.size = 100;
    liar.manifest = Buffer.from(JSON.stringify(liarManifest));
    registry.images.set('liar/layer:v1', liar);
    await assert.rejects(capped.pull(`${registry.host}/liar/layer:v1`), isPullFailure(/larger than 100 bytes/));
    const layersDir = join(root, `store-${n - 1}`, 'layers');
    mkdirSync(layersDir, { recursive: true });
    assert.deepEqual(readdirSync(layersDir), [], 'nothing half-extracted stays in the layer cache');
  });

  it('refuses a malicious layer in a pull and leaves the shared layer cache intact', async () => {
    const s = store();
    const layersDir = join(root, `store-${n - 1}`, 'layers');
    mkdirSync(join(layersDir, 'other'), { recursive: true });
    writeFileSync(join(layersDir, 'other', 'sentinel'), 'keep');
    registry.images.set('evil/whiteout:v1', await fakeImage([await layerOf([{ name: '.wh...' }])]));
    await assert.rejects(s.pull(`${registry.host}/evil/whiteout:v1`), isPullFailure(/a layer was refused: malformed whiteout/));
    assert.equal(readFileSync(join(layersDir, 'other', 'sentinel'), 'utf8'), 'keep');
    assert.deepEqual(readdirSync(layersDir), ['other']);
  });

  it('tells a failed pull with a short reason, never the response body', async () => {
    await assert.rejects(store().pull(`${registry.host}/no/such:v1`), isPullFailure(/answered 404 \(not found\)/));
    registry.handler = (_req, res) => {
      res.statusCode = 401;
      res.setHeader('www-authenticate', `Bearer realm="http://${registry.host}/token"`);
      res.end(SECRET_BODY);
      return true;
    };
    await assert.rejects(store().pull(`${registry.host}/app/img:v1`), isPullFailure(/token service .* answered 401/));
    registry.handler = () => false;
  });

  it('hands a cached image pulled with credentials only to callers the registry accepts', async () => {
    registry.images.set('private/only:v1', await fakeImage([await layerOf([{ name: 'secret', content: 's' }])]));
    const good = `Basic ${Buffer.from('alice:right').toString('base64')}`;
    registry.handler = (req, res) => {
      if (req.headers.authorization === good) return false;
      res.statusCode = 401;
      res.setHeader('www-authenticate', 'Basic realm="reg"');
      res.end(SECRET_BODY);
      return true;
    };
    try {
      const s = store();
      const ref = `${registry.host}/private/only:v1`;
      const pulled = await s.ensure(ref, { username: 'alice', password: 'right' });
      assert.equal(pulled.authenticated, true);
      // Another caller without credentials, or with other ones, is refused although the image is on disk.
      await assert.rejects(s.ensure(ref), isPullFailure(/requires credentials|401/));
      await assert.rejects(s.ensure(ref, { username: 'bob', password: 'wrong' }), isPullFailure(/401/));
      await assert.rejects(s.pull(ref), isPullFailure(/requires credentials|401/));
      // The owner still gets it, and the check is cached briefly.
      const heads = registry.requests.filter((r) => r.method === 'HEAD').length;
      assert.equal((await s.ensure(ref, { username: 'alice', password: 'right' })).digest, pulled.digest);
      assert.equal((await s.ensure(ref, { username: 'alice', password: 'right' })).digest, pulled.digest);
      assert.ok(registry.requests.filter((r) => r.method === 'HEAD').length - heads <= 2);
    } finally {
      registry.handler = () => false;
    }
  });

  it('uses credentials only for the registry they were made for', () => {
    const auth = { username: 'u', password: 'p', serverAddress: 'ghcr.io' };
    assert.deepEqual(credentialsFor(parseImageRef('ghcr.io/o/r:1'), auth), { username: 'u', password: 'p' });
    assert.throws(() => credentialsFor(parseImageRef('evil.example/o/r:1'), auth), (e: unknown) => e instanceof RuntimeError && e.kind === 'IMAGE_PULL_FAILED' && /not for evil\.example/.test(e.message));
    assert.ok(credentialsFor(parseImageRef('busybox'), { ...auth, serverAddress: 'https://index.docker.io/v1/' }));
  });
});

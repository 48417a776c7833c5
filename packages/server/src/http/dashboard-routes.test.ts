import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type TestServer, startTestServer } from '../testing/index.js';
import { DASHBOARD_CSP } from './dashboard-routes.js';

describe('dashboard routes', { concurrency: true }, () => {
  let dir: string;
  let t: TestServer;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'corral-dashboard-'));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><script type="module" src="/assets/app-ABC.js"></script>');
    writeFileSync(join(dir, 'assets', 'app-ABC.js'), 'console.log(1)');
    writeFileSync(join(dir, 'assets', 'style-ABC.css'), 'body{}');
    writeFileSync(join(dir, 'assets', 'notes.txt'), 'not served');
    t = await startTestServer({ dashboardDir: dir });
  });
  after(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the page at / without a key, with a strict CSP and no caching', async () => {
    const r = await t.request('GET', '/', { key: null });
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers['content-type']), /^text\/html/);
    assert.equal(r.headers['content-security-policy'], DASHBOARD_CSP);
    assert.match(DASHBOARD_CSP, /script-src 'self'(;|$)/, 'no inline script, no eval');
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.equal(r.headers['x-frame-options'], 'DENY');
    assert.equal(r.headers['cache-control'], 'no-cache');
    assert.match(r.body, /app-ABC\.js/);
    const again = await t.request('GET', '/', { key: null, headers: { 'if-none-match': String(r.headers.etag) } });
    assert.equal(again.statusCode, 304);
  });

  it('serves the built assets, cached for good, and nothing else under /assets', async () => {
    const js = await t.request('GET', '/assets/app-ABC.js', { key: null });
    assert.equal(js.statusCode, 200);
    assert.match(String(js.headers['content-type']), /^text\/javascript/);
    assert.match(String(js.headers['cache-control']), /immutable/);
    assert.equal(js.body, 'console.log(1)');
    const css = await t.request('GET', '/assets/style-ABC.css', { key: null });
    assert.match(String(css.headers['content-type']), /^text\/css/);
    for (const path of ['/assets/notes.txt', '/assets/missing.js', '/assets/..%2Findex.html', '/assets/%2e%2e%2f%2e%2e%2fpackage.json']) {
      const r = await t.request('GET', path, { key: null });
      assert.equal(r.statusCode, 404, path);
      assert.equal(r.json<{ code: string }>().code, 'ROUTE_NOT_FOUND', path);
    }
  });

  it('leaves the API alone: its routes answer, its 404s stay JSON, and it still wants a key', async () => {
    const missing = await t.request('GET', '/api/v1/no-such-route', { key: null });
    assert.equal(missing.statusCode, 404);
    assert.match(String(missing.headers['content-type']), /^application\/json/);
    assert.equal(missing.headers['content-security-policy'], undefined);
    const other = await t.request('GET', '/sandboxes', { key: null });
    assert.equal(other.statusCode, 404, 'the dashboard routes in the page (#/…), not on the server');
    assert.match(String(other.headers['content-type']), /^application\/json/);
    assert.equal((await t.request('GET', '/api/v1/sandbox', { key: null })).statusCode, 401);
    assert.equal((await t.request('GET', '/api/v1/sandbox')).statusCode, 200);
    assert.equal((await t.request('GET', '/healthz', { key: null })).statusCode, 200);
  });

  it('says so in JSON when no dashboard is built, and has no route when off', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'corral-dashboard-empty-'));
    const unbuilt = await startTestServer({ dashboardDir: empty });
    const off = await startTestServer({ dashboardDir: dir, dashboard: false });
    try {
      const r = await unbuilt.request('GET', '/', { key: null });
      assert.equal(r.statusCode, 404);
      assert.match(r.json<{ detail: string }>().detail, /not built.*npm run build/);
      const none = await off.request('GET', '/', { key: null });
      assert.equal(none.statusCode, 404);
      assert.match(none.json<{ detail: string }>().detail, /No route GET \//);
      assert.equal((await off.request('GET', '/assets/app-ABC.js', { key: null })).statusCode, 404);
    } finally {
      await unbuilt.close();
      await off.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

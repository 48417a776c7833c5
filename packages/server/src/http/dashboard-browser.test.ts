import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { type ListeningTestServer, TEST_IMAGE, dockerMissing, startListeningServer, unavailableSuite } from '../testing/index.js';

const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
const CHROMIUM = process.env.CORRAL_CHROMIUM ?? '/usr/bin/chromium';
/** Screenshots of the main pages, kept for people to look at: <cache>/test-artifacts/dashboard/. */
const ARTIFACTS = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'test-artifacts', 'dashboard');
/** Generous: the whole suite runs at load 10-20. */
const WAIT_MS = 120_000;

const missing = !existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM} (run scripts/ensure-chromium.sh)` : dockerMissing();

/**
 * The few browser globals the page functions below use, which run in Chromium (tsconfig.test.json
 * has no DOM types, and a `lib="dom"` reference would retype fetch and streams for every test).
 * Page functions are sent to the browser as source: they may use only these and casts, no helpers.
 */
interface PageElement {
  textContent: string | null;
  value: string;
  children: ArrayLike<PageElement>;
  getAttribute(name: string): string | null;
  dispatchEvent(event: unknown): boolean;
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement>;
  getElementById(id: string): PageElement | null;
};
declare const location: { hash: string };
declare const sessionStorage: { getItem(key: string): string | null };
declare const window: { __xss?: number };
declare const Event: new (type: string) => unknown;

interface SandboxBody {
  id: string;
  status: string;
}

/** The text xterm.js shows (its DOM renderer's rows). */
async function terminalText(page: Page): Promise<string> {
  return page.$eval('.xterm-rows', (el) => Array.from((el as unknown as PageElement).children, (row) => row.textContent ?? '').join('\n'));
}

if (missing !== undefined) {
  unavailableSuite('dashboard in a real browser', missing);
} else {
  describe('dashboard in a real browser (Debian Chromium, docker driver)', { timeout: 600_000 }, () => {
    let server: ListeningTestServer;
    let browser: Browser;
    let page: Page;
    let built: string;
    const problems: string[] = [];

    before(async () => {
      built = mkdtempSync(join(tmpdir(), 'corral-dashboard-build-'));
      await promisify(execFile)(process.execPath, [join(REPO, 'packages/server/dashboard/build.mjs'), '--out', built]);
      server = await startListeningServer('dash', { dashboardDir: built });
      mkdirSync(ARTIFACTS, { recursive: true });
      browser = await puppeteer.launch({
        executablePath: CHROMIUM,
        headless: true,
        // As root Chromium refuses its sandbox; the page is our own, served from loopback.
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--window-size=1360,900'],
        defaultViewport: { width: 1360, height: 900 },
      });
      page = await browser.newPage();
      // A CSP violation, an uncaught error or a failed request shows here; the test wants none.
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push(`console: ${message.text()}`);
      });
      page.on('pageerror', (error) => problems.push(`page error: ${String(error)}`));
      page.on('dialog', (dialog) => {
        if (dialog.type() === 'confirm') void dialog.accept();
        else {
          problems.push(`unexpected ${dialog.type()} dialog: ${dialog.message()}`);
          void dialog.dismiss();
        }
      });
    });

    after(async () => {
      await browser?.close();
      await server?.close();
      if (built) rmSync(built, { recursive: true, force: true });
    });

    const shot = async (name: string): Promise<void> => {
      await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
    };

    it('signs in, creates a sandbox, sees it RUNNING, runs a command in the terminal, shows its events and stats, deletes it', async () => {
      await page.goto(server.url, { waitUntil: 'load' });
      await page.waitForSelector('#api-key');
      await shot('01-sign-in');

      await page.type('#api-key', 'corral_wrong_key');
      await page.click('#sign-in');
      await page.waitForFunction(() => document.querySelector('.signin-card .form-error')?.textContent?.includes('not accepted'), { timeout: WAIT_MS });
      problems.length = 0; // the refused key's 401 is logged by the browser as a failed request
      await page.$eval('#api-key', (el) => {
        (el as unknown as PageElement).value = '';
      });
      await page.type('#api-key', server.t.adminKey);
      await page.click('#sign-in');
      await page.waitForSelector('#sandbox-table', { timeout: WAIT_MS });
      assert.equal(await page.evaluate(() => sessionStorage.getItem('corral.apiKey')), server.t.adminKey, 'the key is kept in sessionStorage');

      // Create through the form. The name and a label carry markup: it must show as text.
      const name = `<img src=x onerror="window.__xss=1">dash-${Math.random().toString(36).slice(2, 7)}`;
      const label = '<b onmouseover="window.__xss=2">dashboard-test</b>';
      await page.click('#new-sandbox');
      await page.waitForSelector('#create-form');
      for (const [selector, value] of [
        ['#create-name', name],
        ['#create-image', TEST_IMAGE],
        ['#create-cpu', '0.5'],
        ['#create-memory', '0.5'],
        ['#create-disk', '1'],
        ['#create-command', 'tail -f /dev/null'],
        ['#create-labels', `${label}, dashboard`],
      ] as const) {
        await page.$eval(selector, (el) => {
          (el as unknown as PageElement).value = '';
        });
        await page.type(selector, value);
      }
      await shot('02-create-form');
      await page.click('#create-submit');
      await page.waitForFunction(() => location.hash.startsWith('#/sandboxes/'), { timeout: WAIT_MS });
      const id = decodeURIComponent(await page.evaluate(() => location.hash.slice('#/sandboxes/'.length)));
      await page.waitForSelector('#detail-status [data-status="RUNNING"]', { timeout: WAIT_MS });
      assert.equal(await page.$eval('.page-head h1', (el) => el.textContent), name, 'the name is shown as text');
      const sandbox = (await server.t.request('GET', `/api/v1/sandbox/${id}`)).json<SandboxBody & { cpuCores: number; labels: string[] }>();
      assert.equal(sandbox.status, 'RUNNING');
      assert.equal(sandbox.cpuCores, 0.5);
      assert.deepEqual(sandbox.labels, [label, 'dashboard']);
      await shot('03-sandbox-overview');

      // The terminal: a shell on a PTY over the streaming-exec WebSocket.
      await page.click('[data-tab="terminal"]');
      await page.waitForFunction(() => document.getElementById('terminal-status')?.textContent === 'Connected', { timeout: WAIT_MS });
      await page.click('#terminal');
      await page.keyboard.type('echo "dash-$((6 * 7))-ok" && stty size\n');
      // The echo of the typed line holds `$((6 * 7))`; only the output holds 42.
      await page.waitForFunction(() => document.querySelector('.xterm-rows')?.textContent?.includes('dash-42-ok'), { timeout: WAIT_MS });
      const text = await terminalText(page);
      assert.match(text, /dash-42-ok/);
      assert.match(text, /^\d+ \d+\s*$/m, `stty size answers the PTY's size: ${text}`);
      await shot('04-terminal');

      await page.click('[data-tab="events"]');
      await page.waitForSelector('#event-rows tr[data-event-type="stream.opened"]', { timeout: WAIT_MS });
      const types = await page.$$eval('#event-rows tr', (rows) => rows.map((r) => r.getAttribute('data-event-type')));
      assert.ok(types.includes('sandbox.created'), `events: ${types.join(', ')}`);
      await shot('05-events');

      await page.click('[data-tab="stats"]');
      await page.waitForSelector('#stats .stat', { timeout: WAIT_MS });
      await page.waitForFunction(() => document.querySelectorAll('#stats .spark').length >= 2 && !document.querySelector('#stats .stat-value')?.textContent?.includes('…'), { timeout: WAIT_MS });
      await shot('06-stats');

      await page.click('[data-tab="logs"]');
      await page.waitForSelector('#logs');

      // The list: filtered by label and status, live, with the markup shown as text.
      await page.goto(`${server.url}/#/sandboxes`);
      await page.waitForSelector('#sandbox-table');
      await page.type('#filter-labels', 'dashboard');
      await page.select('#filter-status', 'RUNNING');
      await page.waitForSelector(`tr[data-sandbox-id="${id}"] [data-status="RUNNING"]`, { timeout: WAIT_MS });
      const chips = await page.$$eval(`tr[data-sandbox-id="${id}"] .chip`, (els) => els.map((e) => e.textContent));
      assert.deepEqual(chips, [label, 'dashboard']);
      await page.type('#filter-labels', ',no-such-label');
      await page.waitForFunction((sid) => !document.querySelector(`tr[data-sandbox-id="${sid}"]`), { timeout: WAIT_MS }, id);
      await page.$eval('#filter-labels', (el) => {
        (el as unknown as PageElement).value = 'dashboard';
        (el as unknown as PageElement).dispatchEvent(new Event('input'));
      });
      await page.waitForSelector(`tr[data-sandbox-id="${id}"]`, { timeout: WAIT_MS });
      await shot('07-sandbox-list');

      // Delete from the list (the confirm dialog is accepted above); it leaves the RUNNING filter.
      await page.click(`tr[data-sandbox-id="${id}"] [data-action="delete"]`);
      await page.waitForFunction((sid) => !document.querySelector(`tr[data-sandbox-id="${sid}"]`), { timeout: WAIT_MS }, id);
      const after = (await server.t.request('GET', `/api/v1/sandbox/${id}`)).json<SandboxBody>();
      assert.equal(after.status, 'TERMINATED');

      await page.click('a[href="#/admin"]');
      await page.waitForSelector('#key-table');
      await page.type('#key-name', 'from-the-dashboard');
      await page.click('#key-name + button');
      await page.waitForSelector('#new-key .notice code', { timeout: WAIT_MS });
      const secret = await page.$eval('#new-key .notice code', (el) => el.textContent ?? '');
      assert.equal((await server.t.request('GET', '/api/v1/me', { key: secret })).statusCode, 200, 'the key the page shows works');
      await shot('08-admin');

      assert.equal(await page.evaluate(() => window.__xss), undefined, 'no markup from the API ran');
      assert.deepEqual(problems, [], 'no CSP violation, page error or failed request');

      // Signed in with a key that is then revoked: the page forgets it and asks again.
      await page.click('#sign-out');
      await page.waitForSelector('#api-key');
      assert.equal(await page.evaluate(() => sessionStorage.getItem('corral.apiKey')), null, 'signing out forgets the key');
      await page.type('#api-key', secret);
      await page.click('#sign-in');
      await page.waitForSelector('#sandbox-table', { timeout: WAIT_MS });
      const keys = (await server.t.request('GET', '/api/v1/keys')).json<{ keys: Array<{ id: string; name: string }> }>().keys;
      const keyId = keys.find((k) => k.name === 'from-the-dashboard')?.id;
      assert.ok(keyId);
      assert.equal((await server.t.request('DELETE', `/api/v1/keys/${keyId}`)).statusCode, 200);
      await page.waitForFunction(() => document.querySelector('.signin-card .form-error')?.textContent?.includes('no longer accepts'), { timeout: WAIT_MS });
      assert.equal(await page.evaluate(() => sessionStorage.getItem('corral.apiKey')), null);
    });
  });
}

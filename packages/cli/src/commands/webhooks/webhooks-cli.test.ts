import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { eventually, startTestServer, type TestServer } from '@corral/server/testing';
import { runCli } from '../../testing/spawn-cli.js';

describe('corral webhooks against a real server', { timeout: 120_000 }, () => {
  let t: TestServer;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    t = await startTestServer({ instanceId: `cli-webhooks-${randomBytes(4).toString('hex')}`, reconcileIntervalMs: 60_000, webhookAllowPrivate: true });
    env = { CORRAL_API_URL: await t.server.listen(), CORRAL_API_KEY: t.adminKey, XDG_CONFIG_HOME: '/nonexistent-corral-config' };
  });
  after(async () => t.close());

  it('creates (printing the secret once), lists, shows deliveries and deletes', async () => {
    const received: string[] = [];
    const receiver = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        received.push(String(req.headers['corral-webhook-id']));
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/cli`;
      const created = await runCli(['webhooks', 'create', url, '--events', 'sandbox.created,sandbox.status'], env);
      assert.equal(created.code, 0, created.stderr);
      const id = /^Webhook (\S+) → /.exec(created.stdout)?.[1] ?? '';
      assert.match(created.stdout, /Signing secret \(shown once; verify deliveries with it\): whsec_/);

      const list = await runCli(['webhooks', 'list'], env);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /^ID\s+URL\s+EVENTS\s+OWNER\s+ENABLED\s+CREATED\n/);
      assert.match(list.stdout, new RegExp(`${id}\\s+${url}\\s+sandbox.created,sandbox.status\\s+personal\\s+true`));
      assert.ok(!list.stdout.includes('whsec_'));

      const sandbox = await runCli(['sandbox', 'create', 'busybox:latest', '--output', 'json'], env);
      assert.equal(sandbox.code, 0, sandbox.stderr);
      await eventually(() => (received.length > 0 ? true : undefined), 30_000, 'a delivery');
      const deliveries = await runCli(['webhooks', 'deliveries', id, '-o', 'json'], env);
      assert.equal(deliveries.code, 0, deliveries.stderr);
      const rows = (JSON.parse(deliveries.stdout) as { deliveries: Array<{ id: string; eventType: string; status: string }> }).deliveries;
      assert.ok(rows.some((d) => d.eventType === 'sandbox.created' && received.includes(d.id)));
      const table = await runCli(['webhooks', 'deliveries', id], env);
      assert.match(table.stdout, /^ID\s+EVENT\s+STATUS\s+ATTEMPTS\s+LAST\s+NEXT\s+CREATED\n/);
      assert.match(table.stdout, /sandbox\.created\s+(delivered\s+1\s+200|pending|delivering)/);

      const bad = await runCli(['webhooks', 'create', 'ftp://example.com/', '--events', '*'], env);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /http or https/);
      assert.equal((await runCli(['webhooks', 'delete', id], env)).code, 0);
      const gone = await runCli(['webhooks', 'deliveries', id], env);
      assert.equal(gone.code, 2);
      assert.match(gone.stderr, /not found/);
    } finally {
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  });
});

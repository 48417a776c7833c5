import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NflogError, NflogReader } from './nflog-reader.js';
import type { NflogRecord } from './nflog-reader.js';

const REPO = new URL('../../../../../', import.meta.url).pathname;
const BIN = join(process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache'), 'native-test');
/** NFLOG groups are per network namespace: the tests' own namespace has no other reader. */
const GROUP = 1637;

function missing(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, NFLOG)';
  try {
    for (const [tool, flag] of [['ip', '-V'], ['nft', '--version'], ['cc', '--version']] as const) execFileSync(tool, [flag], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2, nftables and a C compiler (scripts/ensure-oci.sh)';
  }
  return undefined;
}

function run(command: string, args: string[], input?: string): void {
  execFileSync(command, args, { input, stdio: ['pipe', 'ignore', 'pipe'] });
}

/**
 * Two network namespaces of the test's own joined by a veth: `a` (198.51.100.1, 2001:db8::1)
 * sends, `b` (198.51.100.20, 2001:db8::20) only exists to be sent to. Traffic never leaves them.
 */
class NamespacePair {
  readonly id = randomBytes(3).toString('hex');
  readonly a = `corral-nflog-${this.id}-a`;
  readonly b = `corral-nflog-${this.id}-b`;
  readonly aPath = `/run/netns/${this.a}`;
  readonly vethA = `cnfl${this.id}a`;

  create(): void {
    run('ip', ['netns', 'add', this.a]);
    run('ip', ['netns', 'add', this.b]);
    run('ip', ['-n', this.a, 'link', 'add', this.vethA, 'type', 'veth', 'peer', 'name', `cnfl${this.id}b`, 'netns', this.b]);
    for (const [ns, dev, v4, v6] of [
      [this.a, this.vethA, '198.51.100.1/24', '2001:db8::1/64'],
      [this.b, `cnfl${this.id}b`, '198.51.100.20/24', '2001:db8::20/64'],
    ] as const) {
      run('ip', ['-n', ns, 'addr', 'add', v4, 'dev', dev]);
      run('ip', ['-n', ns, '-6', 'addr', 'add', v6, 'dev', dev, 'nodad']);
      run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      run('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    }
  }

  /** A table of the test's own in `a`: TCP to port 9 is logged `t1 denied` and reset, the rest logged `t1 allowed`. */
  addLogRules(group: number): void {
    const documentation = `oifname "${this.vethA}" ip daddr 198.51.100.20`;
    const documentation6 = `oifname "${this.vethA}" ip6 daddr 2001:db8::20`;
    const rules = `table inet nflog_test {
  chain out {
    type filter hook output priority 0; policy accept;
    ${documentation} tcp dport 9 log group ${group} prefix "t1 denied" reject with tcp reset
    ${documentation} log group ${group} prefix "t1 allowed"
    ${documentation6} meta l4proto { tcp, udp } log group ${group} prefix "t1 allowed"
  }
}
`;
    run('ip', ['netns', 'exec', this.a, 'nft', '-f', '-'], rules);
  }

  /** Runs a Node script in `a` to completion (synchronously: the event loop of this process stands still meanwhile). */
  runInA(script: string): void {
    const result = spawnSync('ip', ['netns', 'exec', this.a, process.execPath, '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(result.status, 0, result.stderr);
  }

  /** TCP to 198.51.100.20:8080 and :9, UDP to :5353, one ping, TCP to [2001:db8::20]:8443. */
  sendMixedTraffic(): void {
    run('ip', ['netns', 'exec', this.a, 'busybox', 'ping', '-c', '1', '-W', '1', '198.51.100.20']);
    this.runInA(`
      const net = require('node:net'), dgram = require('node:dgram');
      const udp = dgram.createSocket('udp4');
      udp.send('x', 5353, '198.51.100.20', () => udp.close());
      for (const [host, port] of [['198.51.100.20', 8080], ['198.51.100.20', 9], ['2001:db8::20', 8443]]) {
        net.connect(port, host).on('error', () => {});
      }
      setTimeout(() => process.exit(0), 300);
    `);
  }

  remove(): void {
    for (const ns of [this.a, this.b]) spawnSync('ip', ['netns', 'delete', ns]);
  }
}

async function waitFor(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The records for the documentation addresses, in a stable order, without their times. */
function summary(records: NflogRecord[]): string[] {
  return records
    .filter((r) => r.dst.startsWith('198.51.100.') || r.dst.startsWith('2001:db8:'))
    .map((r) => `${r.prefix} ${r.protocol} ${r.src} > ${r.dst} ${r.dport ?? '-'}`)
    .sort();
}

const EXPECTED = [
  't1 allowed icmp 198.51.100.1 > 198.51.100.20 -',
  't1 allowed tcp 198.51.100.1 > 198.51.100.20 8080',
  't1 allowed tcp 2001:db8::1 > 2001:db8::20 8443',
  't1 allowed udp 198.51.100.1 > 198.51.100.20 5353',
  't1 denied tcp 198.51.100.1 > 198.51.100.20 9',
];

describe('NflogReader: packets logged to an NFLOG group, as records', { skip: missing() }, () => {
  const pair = new NamespacePair();
  const readers: NflogReader[] = [];
  function reader(options: Partial<ConstructorParameters<typeof NflogReader>[0]> = {}): { reader: NflogReader; records: NflogRecord[] } {
    const records: NflogRecord[] = [];
    const made = new NflogReader({ group: GROUP, binDir: BIN, netns: pair.aPath, onRecord: (r) => records.push(r), onError: () => {}, ...options });
    readers.push(made);
    return { reader: made, records };
  }

  before(() => pair.create());
  afterEach(async () => {
    await Promise.all(readers.splice(0).map((r) => r.close()));
  });
  after(() => pair.remove());

  it('reports TCP, UDP, ICMP and IPv6 attempts of rules made after it started: prefix, addresses, protocol, port, time', async () => {
    const { reader: first, records } = reader();
    await first.start();
    pair.addLogRules(GROUP);
    const sentAt = Date.now();
    pair.sendMixedTraffic();
    await waitFor('the five records', () => summary(records).length >= EXPECTED.length);
    await sleep(100);
    assert.deepEqual(summary(records), EXPECTED);
    for (const record of records) assert.ok(Math.abs(record.at.getTime() - sentAt) < 10_000, `time ${record.at.toISOString()}`);
    assert.equal(first.stats.records, records.length);
    assert.equal(first.stats.dropped, 0);
    const pid = first.receiverPid;
    assert.ok(pid !== undefined && alive(pid));
    await first.close();
    assert.equal(first.receiverPid, undefined);
    assert.equal(alive(pid), false, 'close() ends the receiver');
  });

  it('reads rules that existed before it started; a second reader of the same group fails clearly; close frees the group', async () => {
    const { reader: first, records } = reader();
    await first.start();
    const { reader: second } = reader();
    await assert.rejects(second.start(), (error: unknown) => {
      assert.ok(error instanceof NflogError);
      assert.equal(error.reason, 'group-busy');
      assert.match(error.message, new RegExp(`NFLOG group ${GROUP} is already bound by another process`));
      assert.match(error.message, /CORRAL_EGRESS_NFLOG_GROUP/);
      return true;
    });
    pair.sendMixedTraffic();
    await waitFor('the five records', () => summary(records).length >= EXPECTED.length);
    assert.deepEqual(summary(records), EXPECTED);
    await first.close();
    const { reader: third, records: thirdRecords } = reader();
    await third.start();
    pair.sendMixedTraffic();
    await waitFor('the five records of the next reader', () => summary(thirdRecords).length >= EXPECTED.length);
    await third.close();
  });

  it('restarts its receiver when it dies, and keeps reporting', async () => {
    const errors: Error[] = [];
    const { reader: restarting, records } = reader({ onError: (e) => errors.push(e) });
    await restarting.start();
    const pid = restarting.receiverPid;
    assert.ok(pid !== undefined);
    process.kill(pid, 'SIGKILL');
    await waitFor('a new receiver', () => restarting.stats.restarts === 1 && restarting.ready);
    assert.notEqual(restarting.receiverPid, pid);
    assert.match(errors[0]?.message ?? '', /corral-nflog exited/);
    pair.sendMixedTraffic();
    await waitFor('the five records after the restart', () => summary(records).length >= EXPECTED.length);
    assert.deepEqual(summary(records), EXPECTED);
    await restarting.close();
  });

  it('its receiver ends when the server process is killed, so the group is free again', async () => {
    const module = new URL('./nflog-reader.ts', import.meta.url).pathname;
    const script = `
      import { NflogReader } from ${JSON.stringify(module)};
      const reader = new NflogReader({ group: ${GROUP}, binDir: ${JSON.stringify(BIN)}, netns: ${JSON.stringify(pair.aPath)}, onRecord: () => {} });
      await reader.start();
      console.log(reader.receiverPid);
      setInterval(() => {}, 1000);
    `;
    const server = spawn(process.execPath, ['--conditions=development', '--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        server.stdout.setEncoding('utf8');
        server.stdout.once('data', (chunk: string) => resolve(chunk.trim()));
        server.once('exit', (code) => reject(new Error(`the server process exited (${code}) before its reader started`)));
      });
      const receiver = Number(line);
      assert.ok(Number.isInteger(receiver) && alive(receiver), `receiver pid ${line}`);
      server.kill('SIGKILL');
      await waitFor('the receiver to end', () => !alive(receiver));
    } finally {
      server.kill('SIGKILL');
    }
    const { reader: next } = reader();
    await next.start();
  });

  it('drops and counts records while the reader is slow instead of buffering without bound', async () => {
    const packets = 4000;
    const { reader: slow, records } = reader({ bufferBytes: 4096 });
    await slow.start();
    // spawnSync holds this event loop: nothing reads the receiver's pipe until the flood is over.
    pair.runInA(`
      const udp = require('node:dgram').createSocket('udp4');
      let sent = 0;
      const next = () => { if (sent === ${packets}) return setTimeout(() => process.exit(0), 300); sent++; udp.send('x', 7000, '198.51.100.20', next); };
      next();
    `);
    await waitFor('the drop count', () => slow.stats.dropped > 0);
    await sleep(300);
    const flood = records.filter((r) => r.dport === 7000).length;
    assert.ok(flood > 0, 'what fitted was delivered');
    assert.ok(flood < packets, `${flood} records: some were dropped`);
    assert.ok(flood + slow.stats.dropped <= packets, `${flood} delivered + ${slow.stats.dropped} dropped <= ${packets} sent`);
    assert.ok(flood + slow.stats.dropped >= packets * 0.9 || slow.stats.kernelOverruns > 0, 'every packet is delivered or counted');
    await slow.close();
  });
});

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { BlockList, connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { runTool } from '../runtime/run-tool.js';

/** Where blocks of the test internet's address range are claimed, one file per block holding the owner's pid. */
const LOCK_DIR = '/run/corral-test-internet';

/** The names the test internet's DNS answers, and which host of the block each resolves to. */
export const TEST_INTERNET_HOSTS = {
  'api.example.test': 2,
  'www.example.test': 3,
  'cdn.other.test': 4,
  'deep.a.b.example.test': 5,
  'blocked.example.test': 6,
  'example.test': 8,
} as const;

/** A name the test internet's DNS answers. */
export type TestInternetName = keyof typeof TEST_INTERNET_HOSTS;

/** The CNAME the zone holds: `alias.example.test` → `cdn.other.test`. */
export const TEST_INTERNET_ALIAS = 'alias.example.test';

/** Port of the line server: it writes `tick <n>\n` every 100 ms on each connection. */
export const TICK_PORT = 9000;

/**
 * A little internet that exists only on this machine, for egress tests: a network namespace of its
 * own, reached from the host over a veth (link 203.0.113.4n/30, TEST-NET-3), holding a /28 of
 * 198.51.100.0/24 (TEST-NET-2) routed from the host. Inside: `dnsmasq` (UDP and TCP) answering
 * {@link TEST_INTERNET_HOSTS} (A records, 5 s TTL, plus an AAAA in 2001:db8::/64 that is not
 * routed), the CNAME {@link TEST_INTERNET_ALIAS}, and one `node` process serving HTTP on port 80 of
 * every address (the body names the address reached) and ticks on {@link TICK_PORT}. Host 7 of the
 * block answers HTTP but no name resolves to it. Up to 16 run at once (one per /28), so concurrent
 * test processes do not collide. `close()` removes everything.
 */
export class TestInternet {
  private constructor(
    /** The block number (0–15). */
    readonly block: number,
    readonly namespace: string,
    private readonly hostVeth: string,
    private readonly children: ChildProcess[],
    private readonly dir: string,
  ) {}

  /** The block's first address, `198.51.100.<16n>`. */
  private host(n: number): string {
    return `198.51.100.${this.block * 16 + n}`;
  }

  /** The /28 this internet holds. */
  get cidr(): string {
    return `${this.host(0)}/28`;
  }

  /** The DNS server's address (port 53, UDP and TCP). */
  get dnsAddress(): string {
    return this.host(1);
  }

  /** The address `name` resolves to. */
  address(name: TestInternetName): string {
    return this.host(TEST_INTERNET_HOSTS[name]);
  }

  /** An address serving HTTP that no name resolves to. */
  get unnamedAddress(): string {
    return this.host(7);
  }

  /** Starts one, claiming a free block. */
  static async start(): Promise<TestInternet> {
    refuseOverlaps();
    const id = randomBytes(3).toString('hex');
    const namespace = `corral-ti-${id}`;
    const hostVeth = `cti${id}`;
    const block = await claimBlock(`${process.pid} ${namespace} ${hostVeth}`);
    const dir = join(LOCK_DIR, `${block}.d`);
    const children: ChildProcess[] = [];
    const internet = new TestInternet(block, namespace, hostVeth, children, dir);
    try {
      const link = (n: number) => `203.0.113.${block * 4 + n}`;
      await runTool('ip', ['netns', 'add', namespace]);
      await runTool('ip', ['-batch', '-'], {
        input: [
          `link add ${hostVeth} type veth peer name eth0 netns ${namespace}`,
          `addr add ${link(1)}/30 dev ${hostVeth}`,
          `link set ${hostVeth} up`,
          `route add ${internet.cidr} via ${link(2)} dev ${hostVeth}`,
        ].join('\n'),
      });
      const addresses = [1, ...Object.values(TEST_INTERNET_HOSTS), 7].map((n) => `addr add ${internet.host(n)}/32 dev eth0`);
      await runTool('ip', ['-n', namespace, '-batch', '-'], {
        input: ['link set lo up', `addr add ${link(2)}/30 dev eth0`, 'link set eth0 up', ...addresses].join('\n'),
      });
      await mkdir(dir, { recursive: true });
      const records = Object.entries(TEST_INTERNET_HOSTS).map(
        ([name, n]) => `host-record=${name},${internet.host(n)},2001:db8::${(block * 16 + n).toString(16)},5`,
      );
      const conf = [
        'no-resolv',
        'no-hosts',
        'no-poll',
        'bind-interfaces',
        `listen-address=${internet.dnsAddress}`,
        'except-interface=lo',
        'user=root',
        'local=/test/',
        'local-ttl=5',
        `cname=${TEST_INTERNET_ALIAS},cdn.other.test,5`,
        ...records,
        '',
      ].join('\n');
      await writeFile(join(dir, 'dnsmasq.conf'), conf);
      children.push(spawnIn(namespace, 'dnsmasq', ['--keep-in-foreground', `--conf-file=${join(dir, 'dnsmasq.conf')}`, `--pid-file=${join(dir, 'dnsmasq.pid')}`]));
      children.push(spawnIn(namespace, process.execPath, ['-e', SERVER_SCRIPT, String(TICK_PORT)]));
      await waitForPort(internet.dnsAddress, 53);
      await waitForPort(internet.host(7), 80);
      await waitForPort(internet.host(2), TICK_PORT);
      return internet;
    } catch (error) {
      await internet.close();
      throw error;
    }
  }

  /** Stops the servers, deletes the namespace (and the veth and route with it), frees the block. */
  async close(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('close', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    await runTool('ip', ['netns', 'delete', this.namespace]).catch(() => undefined);
    await runTool('ip', ['link', 'delete', this.hostVeth]).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
    await rm(join(LOCK_DIR, String(this.block)), { force: true });
  }
}

/** The servers inside the namespace: HTTP on :80 naming the address reached, ticks on the port given. */
const SERVER_SCRIPT = `
const http = require('node:http');
const net = require('node:net');
http.createServer((req, res) => { res.end('hello from ' + req.socket.localAddress + '\\n'); }).listen(80, '0.0.0.0');
net.createServer((socket) => {
  let n = 0;
  socket.on('error', () => {});
  const timer = setInterval(() => socket.write('tick ' + (n++) + '\\n'), 100);
  socket.on('close', () => clearInterval(timer));
}).listen(Number(process.argv[1]), '0.0.0.0');
`;

function spawnIn(namespace: string, command: string, args: string[]): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', namespace, command, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.resume();
  return child;
}

/**
 * Claims the first block whose lock file is absent or held by a dead process; the lock file holds
 * `<pid> <namespace> <host veth>` of its owner.
 */
async function claimBlock(owner: string): Promise<number> {
  await mkdir(LOCK_DIR, { recursive: true });
  for (let block = 0; block < 16; block++) {
    const file = join(LOCK_DIR, String(block));
    try {
      await writeFile(file, owner, { flag: 'wx' });
      return block;
    } catch {
      const [pid, namespace, hostVeth] = (await readFile(file, 'utf8').catch(() => '')).split(' ');
      if (pid && /^\d+$/.test(pid) && existsSync(`/proc/${pid}`)) continue;
      // Left by a process that died without closing: remove its leftovers and take the block over.
      if (namespace && hostVeth) await removeLeftovers(namespace, hostVeth);
      await rm(file, { force: true });
      try {
        await writeFile(file, owner, { flag: 'wx' });
        return block;
      } catch {
        continue;
      }
    }
  }
  throw new Error('no free test internet block (16 in use)');
}

/** Kills the servers of a dead process's test internet and deletes its namespace and veth. */
async function removeLeftovers(namespace: string, hostVeth: string): Promise<void> {
  const pids = await runTool('ip', ['netns', 'pids', namespace]).catch(() => ({ stdout: '' }));
  for (const pid of pids.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await runTool('ip', ['netns', 'delete', namespace]).catch(() => undefined);
  await runTool('ip', ['link', 'delete', hostVeth]).catch(() => undefined);
}

/**
 * Refuses to start on a host whose own networks use TEST-NET-2 or TEST-NET-3: the test internet
 * would shadow them.
 */
function refuseOverlaps(): void {
  const ours = new BlockList();
  ours.addSubnet('198.51.100.0', 24);
  ours.addSubnet('203.0.113.0', 24);
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (name.startsWith('cti')) continue;
    for (const a of addresses ?? []) {
      if (a.family === 'IPv4' && ours.check(a.address)) throw new Error(`the host's ${name} has ${a.address}: the test internet (198.51.100.0/24, 203.0.113.0/24) cannot run here`);
    }
  }
}

/** Resolves once a TCP connection to `host:port` succeeds (servers inside take a moment to listen). */
async function waitForPort(host: string, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the test internet's server at ${host}:${port} did not start`);
}

/**
 * Connection-log settings for a driver under test: an NFLOG group of its own (several test
 * processes run drivers on this host at once, and a group has one reader) and where its receiver
 * is compiled.
 */
export function testConnectionLog(binDir: string): { group: number; binDir: string } {
  return { group: randomInt(20_000, 60_000), binDir };
}

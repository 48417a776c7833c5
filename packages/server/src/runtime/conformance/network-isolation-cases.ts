import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { it } from 'node:test';
import type { SandboxRuntime } from '../runtime.js';
import { makeSpec, runToEnd } from './conformance-suite.js';
import type { ConformanceContext } from './conformance-suite.js';

/** A TCP server in the test process that counts who reached it. */
interface HostListener {
  port: number;
  /** Remote addresses of every connection accepted so far. */
  hits: string[];
  close(): Promise<void>;
}

/** Listens on `host` (`'::'` is dual-stack: IPv6 and IPv4-mapped) on an ephemeral port. */
async function listenOnHost(host: '0.0.0.0' | '::'): Promise<HostListener> {
  const hits: string[] = [];
  const server: Server = createServer((socket) => {
    hits.push(String(socket.remoteAddress));
    socket.on('error', () => undefined); // a reset from the client is not a failure of the test
    socket.end('reached\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host, ipv6Only: false }, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    hits,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Resolves once a connection from the host itself to `host:port` is accepted (the positive control). */
function hostConnects(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host }, () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

/** The link-local address the kernel derives from a MAC address (EUI-64, `addr_gen_mode` 0). */
export function eui64LinkLocal(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  if (b.length !== 6 || b.some((n) => !Number.isInteger(n))) throw new Error(`not a MAC address: ${mac}`);
  const bytes = [(b[0] ?? 0) ^ 2, b[1] ?? 0, b[2] ?? 0, 0xff, 0xfe, b[3] ?? 0, b[4] ?? 0, b[5] ?? 0];
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return `fe80::${groups.join(':')}`;
}

/** How a sandbox addresses `address`: link-local ones need its interface as the scope. */
function scoped(address: string): string {
  const bare = address.split('%')[0] ?? address;
  return bare.toLowerCase().startsWith('fe80:') ? `${bare}%eth0` : bare;
}

/**
 * Every address of the host a sandbox might try: each non-loopback IPv4 and IPv6 address (link-local
 * ones scoped to the sandbox's `eth0`), the EUI-64 link-local of every host interface (present or
 * not: what the kernel would give it with IPv6 on), and the bridge gateway as IPv4 and IPv4-mapped IPv6.
 */
function hostTargets(gateway: string | undefined): string[] {
  const targets = new Set<string>();
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) {
      if (a.internal) continue;
      targets.add(scoped(a.address));
      if (a.mac !== '00:00:00:00:00:00') targets.add(scoped(eui64LinkLocal(a.mac)));
    }
  }
  if (gateway) {
    targets.add(gateway);
    targets.add(`::ffff:${gateway}`);
  }
  return [...targets];
}

/** Parses the default gateway out of /proc/net/route text. */
function defaultGateway(routeTable: string): string | undefined {
  for (const line of routeTable.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === '00000000' && fields[2]) {
      const hex = fields[2];
      return [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.');
    }
  }
  return undefined;
}

/**
 * Tries every `target` × `port` from inside the sandbox at once (busybox `nc`, 2 s connect timeout)
 * and returns the `target port` pairs that connected.
 */
async function connectedFromSandbox(runtime: SandboxRuntime, runtimeId: string, targets: string[], ports: number[]): Promise<{ connected: string[]; lines: string[] }> {
  const script = [
    `for t in ${targets.join(' ')}; do for p in ${ports.join(' ')}; do`,
    '  (out=$(timeout 5 nc -w 2 "$t" "$p" </dev/null 2>/dev/null); echo "$t $p rc=$? $out") &',
    'done; done; wait',
  ].join('\n');
  const r = await runToEnd(runtime, runtimeId, script);
  const lines = r.stdout.trim().split('\n').filter(Boolean);
  assert.equal(lines.length, targets.length * ports.length, `every attempt reported: ${r.stdout} ${r.stderr}`);
  const connected = lines.filter((l) => / rc=0\b/.test(l) || /reached/.test(l)).map((l) => l.split(' rc=')[0] ?? l);
  return { connected, lines };
}

/**
 * Waits (up to 5 s) until no IPv6 address of the sandbox is still tentative (duplicate address
 * detection takes about a second after an interface comes up): an attacker can simply wait, so
 * the tests try their connections only once addresses are usable.
 */
async function ipv6Settled(runtime: SandboxRuntime, runtimeId: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const flags = (await runToEnd(runtime, runtimeId, "awk '{print $5}' /proc/net/if_inet6 2>/dev/null")).stdout.trim().split(/\s+/).filter(Boolean);
    if (!flags.some((f) => (parseInt(f, 16) & 0x40) !== 0)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The IPv6 state of a sandbox: `disable_ipv6` per conf entry, and its IPv6 addresses (`/proc/net/if_inet6`). */
interface Ipv6State {
  disabled: Map<string, string>;
  /** `<interface> <address>` per IPv6 address. */
  addresses: string[];
  mac: string;
}

async function ipv6State(runtime: SandboxRuntime, runtimeId: string): Promise<Ipv6State> {
  const r = await runToEnd(
    runtime,
    runtimeId,
    'for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo "conf $(basename $(dirname $f)) $(cat $f)"; done; ' +
      'cat /proc/net/if_inet6 | awk \'{print "addr " $6 " " $1}\'; echo "mac $(cat /sys/class/net/eth0/address 2>/dev/null)"',
  );
  const disabled = new Map<string, string>();
  const addresses: string[] = [];
  let mac = '';
  for (const line of r.stdout.split('\n')) {
    const [kind, a, b] = line.trim().split(/\s+/);
    if (kind === 'conf' && a && b !== undefined) disabled.set(a, b);
    if (kind === 'addr' && a && b) addresses.push(`${a} ${b}`);
    if (kind === 'mac') mac = a ?? '';
  }
  return { disabled, addresses, mac };
}

/**
 * Network isolation beyond the basic egress test, IPv6 included: a sandbox's only way out is IPv4
 * through the host's NAT to the outside. The host's own services (listening on `0.0.0.0` or `::`),
 * neighbouring sandboxes and the link are out of reach, and the sandbox cannot change that.
 */
export function registerNetworkIsolationCases(context: ConformanceContext): void {
  it('network isolation: no IPv6 on a networked sandbox, and it cannot turn IPv6 on or change addresses, routes or the link', async (t) => {
    const rt = context.runtime;
    const { runtimeId } = await rt.create(makeSpec(context.image, { networkAccess: true }));
    try {
      const before = await ipv6State(rt, runtimeId);
      t.diagnostic(`conf ${JSON.stringify([...before.disabled])}, addresses ${JSON.stringify(before.addresses)}`);
      assert.equal(before.disabled.get('eth0'), '1', 'IPv6 is disabled on eth0');
      assert.equal(before.disabled.get('default'), '1', 'IPv6 is disabled for interfaces made later');
      assert.deepEqual(
        before.addresses.filter((a) => !a.startsWith('lo ')),
        [],
        'no IPv6 address but on loopback',
      );
      const routes = (await runToEnd(rt, runtimeId, 'cat /proc/net/ipv6_route 2>/dev/null')).stdout;
      const offLoopback = routes.split('\n').filter((l) => l.trim() && !/\slo$/.test(l.trim()));
      assert.deepEqual(offLoopback, [], 'no IPv6 route but on loopback');

      const gateway = defaultGateway((await runToEnd(rt, runtimeId, 'cat /proc/net/route')).stdout);
      assert.ok(gateway, 'a networked sandbox has a default route');
      const attempts: Record<string, string> = {
        'write eth0 disable_ipv6': 'echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6',
        'write all disable_ipv6': 'echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6',
        'write default disable_ipv6': 'echo 0 > /proc/sys/net/ipv6/conf/default/disable_ipv6',
        'sysctl -w': 'sysctl -w net.ipv6.conf.eth0.disable_ipv6=0',
        'add IPv6 address': 'ip -6 addr add fd00:c0:ffee::2/64 dev eth0',
        'take the gateway address': `ip addr add ${gateway}/32 dev eth0`,
        'add a route': `ip route add 192.0.2.0/24 via ${gateway}`,
        'add an IPv6 route': 'ip -6 route add default dev eth0',
        'change the MAC address': 'ip link set dev eth0 address 02:00:00:00:00:01',
        'add an interface': 'ip link add cf-dummy0 type dummy',
        'gratuitous ARP for the gateway': `arping -c 1 -w 1 -U -I eth0 -s ${gateway} ${gateway}`,
      };
      const script = Object.entries(attempts)
        .map(([name, cmd]) => `${cmd} >/dev/null 2>/tmp/err; echo "${name}: rc=$? $(head -c 200 /tmp/err | tr '\\n' ' ')"`)
        .join('\n');
      const r = await runToEnd(rt, runtimeId, script);
      t.diagnostic(r.stdout);
      for (const name of Object.keys(attempts)) {
        const line = r.stdout.split('\n').find((l) => l.startsWith(`${name}:`));
        assert.ok(line, `${name} ran: ${r.stdout} ${r.stderr}`);
        assert.match(line, /rc=[1-9]/, `${name} must fail: ${line}`);
      }
      assert.match(r.stdout.split('\n').find((l) => l.startsWith('gratuitous ARP')) ?? '', /not permitted/i, 'no raw sockets');

      const after = await ipv6State(rt, runtimeId);
      assert.deepEqual([...after.disabled], [...before.disabled], 'IPv6 settings unchanged');
      assert.deepEqual(after.addresses, before.addresses, 'IPv6 addresses unchanged');
      assert.equal(after.mac, before.mac, 'MAC address unchanged');
      const v4 = (await runToEnd(rt, runtimeId, 'ip -4 -o addr show; ip route show')).stdout;
      assert.ok(!v4.includes(`${gateway}/32`), `the gateway address was not taken: ${v4}`);
      assert.ok(!v4.includes('192.0.2.0/24'), `no route was added: ${v4}`);
    } finally {
      await rt.remove(runtimeId);
    }
  });

  it('network isolation: host services on 0.0.0.0 and :: are out of reach over IPv4 and IPv6 (link-local included)', async (t) => {
    const gap = context.gap('networkPolicyEnforcement');
    if (gap) return t.skip(gap);
    const rt = context.runtime;
    const [v4, v6] = await Promise.all([listenOnHost('0.0.0.0'), listenOnHost('::')]);
    const { runtimeId } = await rt.create(makeSpec(context.image, { networkAccess: true }));
    try {
      // Positive controls: both listeners answer on the host, the dual-stack one on IPv4 and IPv6.
      await hostConnects('127.0.0.1', v4.port);
      await hostConnects('127.0.0.1', v6.port);
      await hostConnects('::1', v6.port);
      const hostAnswered = v4.hits.length + v6.hits.length;
      assert.equal(hostAnswered, 3);

      const gateway = defaultGateway((await runToEnd(rt, runtimeId, 'cat /proc/net/route')).stdout);
      assert.ok(gateway, 'a networked sandbox has a default route');
      await ipv6Settled(rt, runtimeId);
      const targets = hostTargets(gateway);
      assert.ok(targets.some((a) => a.startsWith('fe80:')), `an IPv6 link-local address to try: ${targets.join(' ')}`);
      const { connected, lines } = await connectedFromSandbox(rt, runtimeId, targets, [v4.port, v6.port]);
      t.diagnostic(lines.join('\n'));
      assert.deepEqual(connected, [], 'the sandbox connected to the host');
      assert.equal(v4.hits.length + v6.hits.length, hostAnswered, `host listeners were reached: ${[...v4.hits, ...v6.hits].join(', ')}`);
    } finally {
      await Promise.all([v4.close(), v6.close(), rt.remove(runtimeId)]);
    }
  });

  it('network isolation: sandboxes cannot reach each other over IPv4 or IPv6', async (t) => {
    const gap = context.gap('networkPolicyEnforcement');
    if (gap) return t.skip(gap);
    const rt = context.runtime;
    const [a, b] = await Promise.all([
      rt.create(makeSpec(context.image, { networkAccess: true })),
      rt.create(makeSpec(context.image, { networkAccess: true })),
    ]);
    try {
      const bIp = (await runToEnd(rt, b.runtimeId, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")).stdout.trim();
      assert.match(bIp, /^\d+\.\d+\.\d+\.\d+$/);
      const bState = await ipv6State(rt, b.runtimeId);
      const bTargets = new Set<string>([bIp, scoped(eui64LinkLocal(bState.mac))]);
      for (const entry of bState.addresses) {
        const [iface, hex] = entry.split(' ');
        if (iface === 'lo' || !hex) continue;
        bTargets.add(scoped((hex.match(/.{4}/g) ?? []).join(':')));
      }
      const listener = await rt.exec(b.runtimeId, { argv: ['/bin/sh', '-c', 'while :; do nc -l -p 8080 -e echo reached; done'] });
      listener.stdout.resume();
      listener.stderr.resume();
      try {
        let self = '';
        for (let i = 0; i < 20 && !self.includes('reached'); i++) {
          self = (await runToEnd(rt, b.runtimeId, `timeout 3 nc -w 2 ${bIp} 8080 </dev/null`)).stdout;
          if (!self.includes('reached')) await new Promise((r) => setTimeout(r, 100));
        }
        assert.match(self, /reached/, 'the listener in sandbox b answers locally');
        await Promise.all([ipv6Settled(rt, a.runtimeId), ipv6Settled(rt, b.runtimeId)]);
        const { connected, lines } = await connectedFromSandbox(rt, a.runtimeId, [...bTargets], [8080]);
        t.diagnostic(lines.join('\n'));
        assert.deepEqual(connected, [], 'sandbox a reached sandbox b');
      } finally {
        await listener.kill('SIGKILL');
      }
    } finally {
      await Promise.all([rt.remove(a.runtimeId), rt.remove(b.runtimeId)]);
    }
  });

  it('network isolation: networkAccess false has no IPv6 way out either', async () => {
    const rt = context.runtime;
    const v6 = await listenOnHost('::');
    try {
      const state = await ipv6State(rt, context.shared);
      assert.deepEqual(
        state.addresses.filter((a) => !a.startsWith('lo ')),
        [],
        'no IPv6 address but on loopback',
      );
      const routes = (await runToEnd(rt, context.shared, 'cat /proc/net/ipv6_route 2>/dev/null')).stdout;
      const offLoopback = routes.split('\n').filter((l) => l.trim() && !/\slo$/.test(l.trim()));
      assert.deepEqual(offLoopback, [], 'no IPv6 route but on loopback');
      const { connected } = await connectedFromSandbox(rt, context.shared, hostTargets(undefined), [v6.port]);
      assert.deepEqual(connected, []);
      assert.deepEqual(v6.hits, []);
    } finally {
      await v6.close();
    }
  });
}

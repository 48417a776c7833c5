import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ensureBridgeDevice, isUnicastMac } from './sandbox-network.js';

/** Below every locally administered address (RFC 7042 documentation range), so a port with it is the bridge's lowest. */
const LOW_MAC = '00:00:5e:00:53:01';

const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: 'ignore' });
};
const sysfs = (dev: string, file: string): string => readFileSync(`/sys/class/net/${dev}/${file}`, 'utf8').trim();

test("the sandbox bridge keeps its MAC address when a port with a lower one joins, so sandboxes' ARP entries for the gateway stay right", async (t) => {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('this test needs root (it makes a bridge and a veth pair)');
    t.skip('needs root');
    return;
  }
  const tag = randomBytes(3).toString('hex');
  const bridge = `cxb${tag}0`;
  const veth = `cxv${tag}`;
  try {
    // A bridge made by an older Corral (its MAC follows its ports), then taken over.
    ip('link', 'add', bridge, 'type', 'bridge');
    assert.notEqual(sysfs(bridge, 'addr_assign_type'), '3');
    const before = sysfs(bridge, 'address');
    await ensureBridgeDevice(bridge, '10.252.0.1/16');
    assert.equal(sysfs(bridge, 'address'), before, 'taking a bridge over keeps its address (sandboxes may hold it)');
    assert.equal(sysfs(bridge, 'addr_assign_type'), '3', 'the address is pinned');

    // A new port with a lower MAC: an unpinned bridge would take it, and every sandbox that had
    // resolved the gateway would send to an address no port answers until its ARP entry aged out.
    ip('link', 'add', veth, 'address', LOW_MAC, 'type', 'veth', 'peer', 'name', `${veth}p`);
    ip('link', 'set', veth, 'master', bridge);
    ip('link', 'set', veth, 'up');
    assert.equal(sysfs(bridge, 'address'), before);
    ip('link', 'delete', veth);
    assert.equal(sysfs(bridge, 'address'), before, 'a port leaving changes nothing either');

    // Idempotent, and the gateway address is there.
    await ensureBridgeDevice(bridge, '10.252.0.1/16');
    assert.equal(sysfs(bridge, 'address'), before);
    assert.match(execFileSync('ip', ['-o', '-4', 'addr', 'show', 'dev', bridge], { encoding: 'utf8' }), /10\.252\.0\.1\/16/);
  } finally {
    execFileSync('sh', ['-c', `ip link delete ${veth} 2>/dev/null; ip link delete ${bridge} 2>/dev/null; true`]);
  }
});

test('a bridge whose ports all left (its address all zeros) gets a random unicast address, not zeros pinned', async (t) => {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') throw new Error('this test needs root (it makes a bridge and a veth pair)');
    t.skip('needs root');
    return;
  }
  const tag = randomBytes(3).toString('hex');
  const bridge = `cxz${tag}0`;
  const veth = `cxw${tag}`;
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`);
    ip('link', 'set', veth, 'master', bridge);
    ip('link', 'delete', veth);
    assert.equal(sysfs(bridge, 'address'), '00:00:00:00:00:00', 'the kernel leaves a bridge without ports all zeros');
    await ensureBridgeDevice(bridge, '10.252.0.1/16');
    assert.equal(isUnicastMac(sysfs(bridge, 'address')), true, sysfs(bridge, 'address'));
    assert.equal(sysfs(bridge, 'addr_assign_type'), '3');
  } finally {
    execFileSync('sh', ['-c', `ip link delete ${veth} 2>/dev/null; ip link delete ${bridge} 2>/dev/null; true`]);
  }
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CompiledEgressPolicy } from './egress-policy.js';
import { EgressFirewall, egressTableName } from './egress-firewall.js';

/** Why the firewall cannot be tested here (nft missing or not root), or undefined. */
function nftMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for nftables';
  try {
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'nft is not installed';
  }
}

const missing = nftMissing();

describe('egress firewall transactions', { skip: process.env.CI !== 'true' && missing !== undefined ? missing : false }, () => {
  const instance = `fwtest-${randomBytes(4).toString('hex')}`;
  // No bridge of this name exists: the rules match no packet, which is all these cases need.
  const firewall = new EgressFirewall({ instance, bridgeName: 'corral-fwtest0', gateway: '10.254.0.1' });
  const allow = new CompiledEgressPolicy({ allowlist: ['api.example.test'], denylist: null });
  const chains = (): string => execFileSync('nft', ['list', 'table', 'inet', egressTableName(instance)], { encoding: 'utf8' });

  before(async () => {
    await firewall.start(5353);
  });
  after(async () => {
    await firewall.destroy();
  });

  it('removing a sandbox it holds no rules for runs no transaction (every removal of a sandbox without a policy used to run four)', async () => {
    const before = firewall.transactions;
    await firewall.remove('never-applied');
    assert.equal(firewall.transactions - before, 0);
  });

  it('a sandbox it holds rules for is removed in one transaction, and a second removal runs none', async () => {
    await firewall.apply('sb-1', '10.254.0.2', allow, []);
    const tag = firewall.tagOf('sb-1');
    assert.match(chains(), new RegExp(`chain s_${tag}`));
    const before = firewall.transactions;
    await firewall.remove('sb-1');
    assert.equal(firewall.transactions - before, 1);
    assert.doesNotMatch(chains(), new RegExp(`s_${tag}|a_${tag}|10\\.254\\.0\\.2`));
    await firewall.remove('sb-1');
    assert.equal(firewall.transactions - before, 1);
  });

  it('leftovers of a previous process are removed by retainOnly, not by removals', async () => {
    await firewall.apply('sb-2', '10.254.0.3', allow, []);
    const tag = firewall.tagOf('sb-2');
    // A new firewall object on the same table, as after a restart, knows no sandbox.
    const restarted = new EgressFirewall({ instance, bridgeName: 'corral-fwtest0', gateway: '10.254.0.1' });
    await restarted.start(5353);
    await restarted.retainOnly([]);
    assert.doesNotMatch(chains(), new RegExp(`s_${tag}|a_${tag}|10\\.254\\.0\\.3`));
  });

  it('updates asked for while a transaction runs go out together in the next one, in order', async () => {
    await firewall.apply('sb-3', '10.254.0.4', allow, []);
    const before = firewall.transactions;
    const addresses = Array.from({ length: 20 }, (_, i) => `198.51.100.${i + 1}`);
    await Promise.all(addresses.map((address) => firewall.addResolved('sb-3', 'allowed', [address], 60)));
    const used = firewall.transactions - before;
    assert.ok(used >= 1 && used <= 3, `20 concurrent updates took ${used} transactions`);
    const listed = chains();
    for (const address of addresses) assert.match(listed, new RegExp(`${address.replace(/\./g, '\\.')}\\b`));
    await firewall.remove('sb-3');
  });

  it('a failing update merged with others fails alone: the others still apply', async () => {
    await firewall.apply('sb-4', '10.254.0.5', allow, []);
    await firewall.apply('sb-5', '10.254.0.6', allow, []);
    // sb-4's set vanishes behind the firewall's back: its next update fails.
    execFileSync('nft', ['delete', 'element', 'inet', egressTableName(instance), 'sandboxes', '{ 10.254.0.5 }']);
    execFileSync('nft', ['flush', 'chain', 'inet', egressTableName(instance), `s_${firewall.tagOf('sb-4')}`]);
    execFileSync('nft', ['delete', 'set', 'inet', egressTableName(instance), `a_${firewall.tagOf('sb-4')}`]);
    const results = await Promise.allSettled([
      firewall.addResolved('sb-5', 'allowed', ['198.51.100.100'], 60),
      firewall.addResolved('sb-4', 'allowed', ['198.51.100.101'], 60),
      firewall.addResolved('sb-5', 'allowed', ['198.51.100.102'], 60),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    const set = execFileSync('nft', ['list', 'set', 'inet', egressTableName(instance), `a_${firewall.tagOf('sb-5')}`], { encoding: 'utf8' });
    assert.match(set, /198\.51\.100\.100\b/);
    assert.match(set, /198\.51\.100\.102\b/);
  });
});

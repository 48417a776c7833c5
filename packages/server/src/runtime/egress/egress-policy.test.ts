import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CompiledEgressPolicy, egressPolicyProblems, MAX_EGRESS_POLICY_ENTRIES, normalizeEgressPolicy, parseEgressEntry } from './egress-policy.js';

describe('egress policy entries', () => {
  it('parses domains, leftmost wildcards, addresses and CIDRs (IPv4 and IPv6), canonically', () => {
    assert.deepEqual(parseEgressEntry('API.Example.test.'), { kind: 'domain', name: 'api.example.test', wildcard: false });
    assert.deepEqual(parseEgressEntry('*.example.test'), { kind: 'domain', name: 'example.test', wildcard: true });
    assert.deepEqual(parseEgressEntry('198.51.100.7'), { kind: 'network', family: 4, address: '198.51.100.7', prefix: 32 });
    assert.deepEqual(parseEgressEntry('198.51.100.77/24'), { kind: 'network', family: 4, address: '198.51.100.0', prefix: 24 });
    assert.deepEqual(parseEgressEntry('2001:db8:5::1/32'), { kind: 'network', family: 6, address: '2001:db8::', prefix: 32 });
  });

  it('refuses schemes, ports, paths, credentials, bare and inner wildcards, bad prefixes and labels', () => {
    for (const bad of ['', 'https://example.test', 'example.test:443', 'example.test/path', 'u@example.test', '*', 'api.*.test', '*example.test', '10.0.0.0/33', '2001:db8::/129', 'a..b', '-a.test', 'example.test?x=1']) {
      assert.ok('error' in parseEgressEntry(bad), `refuses ${JSON.stringify(bad)}`);
    }
  });

  it('reports problems with the field and the reason: both lists, too many entries, bad entries', () => {
    const fields = { allowlist: 'network_allowlist', denylist: 'network_denylist' };
    assert.match(egressPolicyProblems({ allowlist: [], denylist: [] }, fields)[0]?.reason ?? '', /mutually exclusive/);
    const many = Array.from({ length: MAX_EGRESS_POLICY_ENTRIES + 1 }, (_, i) => `h${i}.test`);
    assert.equal(egressPolicyProblems({ allowlist: many, denylist: null }, fields)[0]?.field, 'network_allowlist');
    assert.deepEqual(
      egressPolicyProblems({ allowlist: null, denylist: ['ok.test', 'http://x'] }, fields).map((p) => p.field),
      ['network_denylist[1]'],
    );
    assert.deepEqual(egressPolicyProblems({ allowlist: [], denylist: null }, fields), []);
  });

  it('normalizes: trimmed, lower case, no trailing dot, no duplicates', () => {
    assert.deepEqual(normalizeEgressPolicy({ allowlist: [' A.test ', 'a.test.', '10.0.0.1'], denylist: null }), { allowlist: ['a.test', '10.0.0.1'], denylist: null });
  });
});

describe('CompiledEgressPolicy', () => {
  it('allow list: exact names, wildcards at any depth below (not the apex), and CIDRs', () => {
    const p = new CompiledEgressPolicy({ allowlist: ['*.example.test', 'one.test', '198.51.100.0/25'], denylist: null });
    assert.equal(p.mode, 'allow');
    for (const name of ['api.example.test', 'a.b.example.test', 'ONE.test.']) assert.ok(p.allowsName(name), name);
    for (const name of ['example.test', 'badexample.test', 'two.test', 'one.test.evil']) assert.ok(!p.allowsName(name), name);
    assert.ok(p.allowsAddress('198.51.100.5'));
    assert.ok(!p.allowsAddress('198.51.100.200'));
  });

  it('deny list: everything but the named', () => {
    const p = new CompiledEgressPolicy({ allowlist: null, denylist: ['*.bad.test', '2001:db8::/32'] });
    assert.ok(!p.allowsName('x.bad.test'));
    assert.ok(p.allowsName('good.test'));
    assert.ok(!p.allowsAddress('2001:db8::1'));
    assert.ok(p.allowsAddress('198.51.100.1'));
  });

  it('empty allow list allows nothing; no list allows everything', () => {
    const none = new CompiledEgressPolicy({ allowlist: [], denylist: null });
    assert.ok(!none.allowsName('a.test') && !none.allowsAddress('198.51.100.1'));
    const open = new CompiledEgressPolicy({ allowlist: null, denylist: null });
    assert.ok(open.allowsName('a.test') && open.allowsAddress('198.51.100.1'));
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NflogRecord } from './nflog-reader.js';
import { DEFAULT_NFLOG_GROUP, NFLOG_PREFIX_FORMAT, egressLogEntryFromNflog, nflogPrefix, parseNflogPrefix } from './nflog-prefix.js';

function record(overrides: Partial<NflogRecord> = {}): NflogRecord {
  return {
    prefix: 'sb1 allowed',
    src: '10.88.0.5',
    dst: '198.51.100.20',
    protocol: 'tcp',
    dport: 443,
    at: new Date('2026-12-06T04:00:00.123Z'),
    ...overrides,
  };
}

describe('NFLOG prefix format', () => {
  it('documents the format and the default group', () => {
    assert.equal(NFLOG_PREFIX_FORMAT, '<tag> <verdict>');
    assert.equal(DEFAULT_NFLOG_GROUP, 1637);
  });

  it('writes "<tag> <verdict>" and reads it back', () => {
    assert.equal(nflogPrefix('sb1', 'allowed'), 'sb1 allowed');
    assert.equal(nflogPrefix('c0ffee-12.x_y:z', 'denied'), 'c0ffee-12.x_y:z denied');
    assert.deepEqual(parseNflogPrefix('sb1 allowed'), { tag: 'sb1', verdict: 'allowed' });
    assert.deepEqual(parseNflogPrefix('sb1 denied'), { tag: 'sb1', verdict: 'denied' });
    const long = 'a'.repeat(100);
    assert.deepEqual(parseNflogPrefix(nflogPrefix(long, 'denied')), { tag: long, verdict: 'denied' });
  });

  it('refuses tags that would break the format or not fit a log prefix', () => {
    for (const tag of ['', 'a b', 'a\tb', 'a"b', 'naïve', 'a'.repeat(101), 'x\n']) {
      assert.throws(() => nflogPrefix(tag, 'allowed'), /NFLOG tag/, JSON.stringify(tag));
    }
  });

  it('reads anything else as no prefix of ours', () => {
    for (const prefix of ['', 'sb1', 'sb1 accepted', 'sb1 allowed extra', ' sb1 allowed', 'sb1  allowed', 'sb1 ALLOWED', 'a?b allowed', 'sb1 allowed\t']) {
      assert.equal(parseNflogPrefix(prefix), null, JSON.stringify(prefix));
    }
  });
});

describe('egressLogEntryFromNflog', () => {
  const sandboxes = new Map([['sb1', 'sandbox-one'], ['sb2', 'sandbox-two']]);
  const resolve = (tag: string): string | undefined => sandboxes.get(tag);

  it('maps an allowed TCP attempt to a connect entry of its sandbox', () => {
    assert.deepEqual(egressLogEntryFromNflog(record(), resolve), {
      sandbox: 'sandbox-one',
      entry: { at: '2026-12-06T04:00:00.123Z', kind: 'connect', destination: '198.51.100.20', port: 443, protocol: 'tcp', verdict: 'allowed' },
    });
  });

  it('maps a denied attempt, IPv6, and protocols without ports', () => {
    assert.deepEqual(egressLogEntryFromNflog(record({ prefix: 'sb2 denied', dst: '2001:db8::20', protocol: 'udp', dport: 53 }), resolve)?.entry, {
      at: '2026-12-06T04:00:00.123Z',
      kind: 'connect',
      destination: '2001:db8::20',
      port: 53,
      protocol: 'udp',
      verdict: 'denied',
    });
    const ping = egressLogEntryFromNflog(record({ prefix: 'sb2 denied', protocol: 'icmp', dport: null }), resolve);
    assert.equal(ping?.sandbox, 'sandbox-two');
    assert.equal(ping?.entry.port, null);
    assert.equal(ping?.entry.protocol, 'icmp');
  });

  it('drops records of unknown tags and of prefixes not in the format', () => {
    assert.equal(egressLogEntryFromNflog(record({ prefix: 'gone allowed' }), resolve), null);
    assert.equal(egressLogEntryFromNflog(record({ prefix: 'someone else\'s rule' }), resolve), null);
    assert.equal(egressLogEntryFromNflog(record({ prefix: 'sb1 maybe' }), resolve), null);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDfUsed, parseNetDev } from './sandbox-stats.js';

describe('sandbox usage probe parsing', () => {
  it('sums /proc/net/dev over every interface but lo', () => {
    const text = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    5000      40    0    0    0     0          0         0     2500      20    0    0    0     0       0          0
  eth1:     100       1    0    0    0     0          0         0       50       1    0    0    0     0       0          0
`;
    assert.deepEqual(parseNetDev(text), { rxBytes: 5100, rxPackets: 41, txBytes: 2550, txPackets: 21 });
    assert.equal(parseNetDev('    lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n'), null);
    assert.equal(parseNetDev('eth0: lies -1 x\n'), null);
  });

  it('reads the used KiB of df -P -k as bytes', () => {
    const text = 'Filesystem     1024-blocks    Used Available Capacity Mounted on\n/dev/loop3         999320    2048    928460       1% /\n';
    assert.equal(parseDfUsed(text), 2048 * 1024);
    assert.equal(parseDfUsed(''), null);
    assert.equal(parseDfUsed('Filesystem 1024-blocks Used\nnonsense\n'), null);
  });
});

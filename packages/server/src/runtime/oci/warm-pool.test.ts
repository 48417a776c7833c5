import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { specFixture } from '../../testing/sandbox-fixture.js';
import { idleProgram, templateKey, WarmDemand, warmTemplateOf } from './warm-pool.js';
import type { WarmTemplate } from './warm-pool.js';

const spec = specFixture({ sandboxId: 'a', image: 'busybox' });
const template = (image: string, diskBytes = 1): WarmTemplate => ({
  image,
  startCommand: null,
  online: true,
  diskBytes,
  workspacePath: '/w',
  cpuCores: 1,
  memoryBytes: 1,
  pidsLimit: 1,
});

describe('warm pool: templates', () => {
  it('pools creates with no or an idle start command, never other start commands or GPUs', () => {
    assert.ok(warmTemplateOf(spec, 'docker.io/library/busybox:latest', '/w', true));
    assert.ok(warmTemplateOf({ ...spec, startCommand: 'tail -f /dev/null' }, 'i', '/w', true));
    assert.equal(warmTemplateOf({ ...spec, startCommand: 'python3 server.py' }, 'i', '/w', true), undefined);
    assert.equal(warmTemplateOf({ ...spec, startCommand: 'sleep infinity; rm -rf /' }, 'i', '/w', true), undefined);
    assert.equal(warmTemplateOf({ ...spec, gpuCount: 1 }, 'i', '/w', true), undefined);
    assert.equal(idleProgram('exec  sleep infinity'), 'sleep');
  });

  it('keys by what cannot change after start, not by limits or env', () => {
    const a = warmTemplateOf({ ...spec, cpuCores: 1, env: { A: '1' } }, 'i', '/w', true);
    const b = warmTemplateOf({ ...spec, cpuCores: 4, memoryBytes: 9, env: { B: '2' } }, 'i', '/w', true);
    assert.ok(a && b);
    assert.equal(templateKey(a), templateKey(b));
    for (const other of [{ ...a, online: false }, { ...a, diskBytes: 2 }, { ...a, image: 'j' }, { ...a, workspacePath: '/x' }, { ...a, startCommand: 'tail -f /dev/null' }]) {
      assert.notEqual(templateKey(other), templateKey(a));
    }
  });
});

describe('warm pool: demand', () => {
  it('keeps as many as the recent creates, most used first, at most max in all, none once the window passed', () => {
    const demand = new WarmDemand(5, 1000);
    for (let i = 0; i < 4; i++) demand.record(template('popular'), 100 + i);
    demand.record(template('rare'), 200);
    demand.record(template('rare'), 210);
    const at = (now: number): [string, number][] => [...demand.targets(now).values()].map((t) => [t.template.image, t.count]);
    assert.deepEqual(at(300), [['popular', 4], ['rare', 1]]);
    assert.deepEqual(at(1150), [['rare', 2]], 'the popular creates left the window');
    assert.deepEqual(at(1300), []);
  });

  it('is off with max 0', () => {
    const demand = new WarmDemand(0);
    demand.record(template('x'));
    assert.equal(demand.targets().size, 0);
  });
});

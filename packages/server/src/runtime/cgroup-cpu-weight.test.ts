import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { loadConfig } from '../config.js';
import { cpuWeightSetting, setCgroupCpuWeight, sharesOfWeight } from './cgroup-cpu-weight.js';

describe('sandbox cgroup CPU weight', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'corral-cpu-weight-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('converts a v2 weight to v1 shares as systemd does (100 is 1024), never below 2', () => {
    assert.equal(sharesOfWeight(100), 1024);
    assert.equal(sharesOfWeight(10), 102);
    assert.equal(sharesOfWeight(1), 10);
    assert.equal(sharesOfWeight(10_000), 102_400);
    assert.equal(sharesOfWeight(0.1), 2);
  });

  it('on cgroup v1 creates the cgroup in the cpu hierarchy and writes cpu.shares', async () => {
    mkdirSync(join(root, 'cpu'));
    const setting = await setCgroupCpuWeight('/corral-oci', 10, { root, create: true });
    assert.deepEqual(setting, { file: join(root, 'cpu', 'corral-oci', 'cpu.shares'), value: 102 });
    assert.equal(readFileSync(join(root, 'cpu', 'corral-oci', 'cpu.shares'), 'utf8'), '102');
  });

  it('on cgroup v2 enables the cpu controller below the parent when the weight file is missing, then writes cpu.weight', async () => {
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
    writeFileSync(join(root, 'cgroup.subtree_control'), '');
    const setting = await setCgroupCpuWeight('corral-oci', 25, { root, create: true });
    assert.deepEqual(setting, { file: join(root, 'corral-oci', 'cpu.weight'), value: 25 });
    assert.equal(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8'), '+cpu');
    assert.equal(readFileSync(join(root, 'corral-oci', 'cpu.weight'), 'utf8'), '25');
  });

  it('leaves a missing cgroup alone unless asked to create it (a Docker engine on another host)', async () => {
    mkdirSync(join(root, 'cpu'));
    assert.equal(await setCgroupCpuWeight('/corral-docker', 10, { root }), null);
    assert.equal((await cpuWeightSetting('/corral-docker', 10, root)).file, join(root, 'cpu', 'corral-docker', 'cpu.shares'));
    await assert.rejects(cpuWeightSetting('/', 10, root), /root cgroup/);
  });

  it('CORRAL_SANDBOX_CPU_WEIGHT defaults to 10, takes 1–10000 or off, and refuses anything else', () => {
    assert.equal(loadConfig({ env: {} }).sandboxCpuWeight, 10);
    assert.equal(loadConfig({ env: { CORRAL_SANDBOX_CPU_WEIGHT: 'off' } }).sandboxCpuWeight, null);
    assert.equal(loadConfig({ env: { CORRAL_SANDBOX_CPU_WEIGHT: '250' } }).sandboxCpuWeight, 250);
    assert.throws(() => loadConfig({ env: { CORRAL_SANDBOX_CPU_WEIGHT: '0' } }), /CORRAL_SANDBOX_CPU_WEIGHT/);
    assert.throws(() => loadConfig({ env: { CORRAL_SANDBOX_CPU_WEIGHT: 'low' } }), /CORRAL_SANDBOX_CPU_WEIGHT/);
  });
});

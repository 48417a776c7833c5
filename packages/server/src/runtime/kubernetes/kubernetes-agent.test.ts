import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { authFrame, execFrame } from '../agent-protocol.js';
import { makeSpec, runToEnd, within } from '../conformance/conformance-suite.js';
import type { KubernetesRuntime } from './kubernetes-runtime.js';
import { AGENT_PORT } from './pod-spec.js';
import { K8S_TEST_IMAGE, TEST_KUBECONFIG, kubernetesMissing, kubernetesUnavailable, testKubernetesRuntime } from '../../testing/kubernetes-available.js';

/**
 * The kubernetes driver's agent path on the local cluster (scripts/ensure-kubernetes.sh): execs of
 * sandboxes with network access go to `corral-agent` (PID 1) at the Pod IP, and nothing else that
 * reaches that port (another sandbox, or the host without the sandbox's secret) runs anything.
 */

const IMAGE = K8S_TEST_IMAGE;
const KUBECONFIG = TEST_KUBECONFIG;
const NAMESPACE = process.env.CORRAL_K8S_NAMESPACE ?? 'corral-conformance';

const reason = await kubernetesMissing(KUBECONFIG);
if (reason !== undefined) kubernetesUnavailable('kubernetes agent exec path', reason);

describe('kubernetes agent exec path', { skip: reason }, () => {
  let runtime: KubernetesRuntime;
  let a: string;
  let b: string;
  let ipA: string;

  before(async () => {
    runtime = testKubernetesRuntime({ instance: `agent-${randomBytes(4).toString('hex')}`, namespace: NAMESPACE, exec: 'agent' });
    await runtime.init();
    [a, b] = await Promise.all([runtime.create(makeSpec(IMAGE, { networkAccess: true })), runtime.create(makeSpec(IMAGE, { networkAccess: true }))]).then((r) => r.map((x) => x.runtimeId));
    // Through the agent, an exec's parent is PID 1 (through the exec API it has none in the sandbox).
    const r = await runToEnd(runtime, a, 'echo $PPID; tr "\\0" " " < /proc/1/cmdline');
    const [ppid, cmdline] = r.stdout.trim().split('\n');
    assert.equal(ppid, '1', r.stdout + r.stderr);
    assert.match(cmdline ?? '', /^\/\.corral\/bin\/corral-agent init --listen-tcp=61000 /);
    const config = new KubeConfig();
    config.loadFromFile(KUBECONFIG);
    const pod = await config.makeApiClient(CoreV1Api).readNamespacedPod({ name: a, namespace: NAMESPACE });
    ipA = pod.status?.podIP ?? '';
    assert.match(ipA, /^\d+\.\d+\.\d+\.\d+$/, r.stdout);
  });

  after(async () => {
    for (const s of await runtime.list()) await runtime.remove(s.runtimeId).catch(() => undefined);
    await runtime.close();
  });

  it("another sandbox reaching this one's agent port runs nothing: no handshake, a wrong secret, or a replayed answer", async () => {
    const touch = (name: string): Buffer => execFrame({ argv: ['touch', `/tmp/${name}`], env: [], cwd: '/', uid: 0, gid: 0, groups: [], stdin: false });
    const attempts = {
      bare: touch('bare'),
      // The answer to some other nonce, under a guessed secret: what a sandbox could record or make.
      forged: Buffer.concat([authFrame('guessed-secret-guessed-secret', randomBytes(32)), touch('forged')]),
    };
    for (const [name, payload] of Object.entries(attempts)) {
      await runtime.putFile(b, `/tmp/${name}.frames`, Readable.from([payload]));
      const r = await within(20_000, `nc from the other sandbox (${name})`, runToEnd(runtime, b, `nc -w 3 ${ipA} ${AGENT_PORT} < /tmp/${name}.frames | wc -c`));
      // It gets the 37-byte nonce frame and nothing else: the agent closed the connection.
      assert.equal(r.stdout.trim(), '37', `${name}: ${r.stdout} ${r.stderr}`);
    }
    const check = await runToEnd(runtime, a, 'ls /tmp');
    assert.doesNotMatch(check.stdout, /bare|forged/);
  });

  it('the sandbox sees no agent secret: not in its environment, and PID 1 environ is closed to it', async () => {
    const r = await runToEnd(runtime, a, 'env | grep -c CORRAL_AGENT_SECRET; cat /proc/1/environ > /dev/null 2>&1 && echo readable || echo closed');
    assert.equal(r.stdout, '0\nclosed\n', r.stderr);
  });

  it('1 MiB of argv and a 1 MiB shell script (through a file) run over the agent', async () => {
    const args = Array.from({ length: 1024 }, (_, i) => `${i}`.padEnd(1024, 'x'));
    const many = await runToEnd(runtime, a, { argv: ['/bin/sh', '-c', 'echo $#', 'sh', ...args] });
    assert.equal(many.stdout, '1024\n', many.stderr);
    const script = `${'# filler line\n'.repeat(80_000)}echo "big $1"`;
    const big = await runToEnd(runtime, a, { argv: ['/bin/sh', '-c', script, 'sh', 'arg1'] });
    assert.deepEqual(big, { stdout: 'big arg1\n', stderr: '', exitCode: 0 });
  });

  it('a FIFO /etc/passwd fails an exec with a user promptly and blocks nothing (the agent resolves users itself)', async () => {
    const { runtimeId } = await runtime.create(makeSpec(IMAGE, { networkAccess: true }));
    try {
      const setup = await runToEnd(runtime, runtimeId, 'rm -f /etc/passwd /etc/group && mkfifo /etc/passwd /etc/group && echo ok');
      assert.equal(setup.stdout, 'ok\n', setup.stderr);
      const users = ['nobody', '1000', 'daemon', '1:1'];
      const results = await within(10_000, 'execs with a user', Promise.all(users.map((user) => runToEnd(runtime, runtimeId, { argv: ['id', '-u'], user }))));
      for (const r of results) {
        assert.notEqual(r.exitCode, 0);
        assert.match(r.stdout + r.stderr, /\/etc\/(passwd|group)/);
      }
      assert.deepEqual(await within(10_000, 'a plain exec', runToEnd(runtime, runtimeId, 'echo still-works')), { stdout: 'still-works\n', stderr: '', exitCode: 0 });
    } finally {
      await runtime.remove(runtimeId);
    }
  });
});

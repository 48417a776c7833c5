import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { specFixture } from '../../testing/sandbox-fixture.js';
import { KEPT_CAPABILITIES } from '../container-policy.js';
import { AGENT_PORT, AGENT_SECRET_ENV, buildEnvSecret, buildPod, HELPER_PATH, LABEL_INSTANCE, LABEL_SANDBOX_ID, podName, serverResolvConf } from './pod-spec.js';
import { exitCodeOf } from './kubernetes-exec.js';
import { parseQuantity } from './quantity.js';

const OPTIONS = { instance: 'inst', namespace: 'ns', runtimeClass: null, envSecret: 'corral-abc-env', pullSecret: null, cpuRequestFraction: 1, helperConfigMap: 'corral-agent-x', resolvConf: 'nameserver 10.0.0.10\n' };

describe('kubernetes pod spec', () => {
  it('holds no env value, takes env from the Secret, and is locked down', () => {
    const spec = specFixture({ sandboxId: 'abc', image: 'busybox:1', env: { SECRET_TOKEN: 'hunter2' }, cpuCores: 0.5, memoryBytes: 256 * 1024 ** 2, diskBytes: 1024 ** 3 });
    const pod = buildPod(spec, podName(spec.sandboxId), OPTIONS);
    assert.ok(!JSON.stringify(pod).includes('hunter2'), 'the Pod spec carries no env value');
    const container = pod.spec?.containers[0];
    assert.deepEqual(container?.envFrom, [{ secretRef: { name: 'corral-abc-env' } }]);
    assert.deepEqual(container?.securityContext?.capabilities, { drop: ['ALL'], add: KEPT_CAPABILITIES });
    assert.equal(container?.securityContext?.allowPrivilegeEscalation, false);
    assert.equal(container?.securityContext?.seccompProfile?.type, 'RuntimeDefault');
    assert.equal(pod.spec?.automountServiceAccountToken, false);
    assert.equal(pod.spec?.restartPolicy, 'Never');
    assert.deepEqual(container?.resources?.limits, { cpu: '500m', memory: String(256 * 1024 ** 2), 'ephemeral-storage': String(1024 ** 3) });
    assert.equal(pod.metadata?.labels?.[LABEL_SANDBOX_ID], 'abc');
    assert.equal(pod.metadata?.labels?.[LABEL_INSTANCE], 'inst');
    const secret = buildEnvSecret(spec, 'corral-abc-env', OPTIONS, 'agent-secret-0123456789');
    assert.deepEqual(secret.stringData, { SECRET_TOKEN: 'hunter2', [AGENT_SECRET_ENV]: 'agent-secret-0123456789' });
  });

  it('runs corral-agent as PID 1 on the agent port, its secret from the env Secret, never in the Pod spec', () => {
    const spec = specFixture({ sandboxId: 'abc', image: 'busybox:1', env: { [AGENT_SECRET_ENV]: 'user-value' }, startCommand: 'echo hi' });
    const pod = buildPod(spec, podName(spec.sandboxId), OPTIONS);
    assert.deepEqual(pod.spec?.containers[0]?.command, [HELPER_PATH, 'init', `--listen-tcp=${AGENT_PORT}`, `--secret-env=${AGENT_SECRET_ENV}`, '--', '/bin/sh', '-c', 'echo hi']);
    assert.ok(!JSON.stringify(pod).includes('agent-secret-0123456789'));
    // The driver's value wins over a user variable of the same name.
    assert.equal(buildEnvSecret(spec, 'x', OPTIONS, 'agent-secret-0123456789').stringData?.[AGENT_SECRET_ENV], 'agent-secret-0123456789');
  });

  it('gives a sandbox without network an init container that only has NET_ADMIN', () => {
    const offline = buildPod(specFixture({ sandboxId: 'a', image: 'busybox:1', networkAccess: false }), 'corral-a', OPTIONS);
    assert.deepEqual(offline.spec?.initContainers?.[0]?.securityContext?.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] });
    const online = buildPod(specFixture({ sandboxId: 'b', image: 'busybox:1', networkAccess: true }), 'corral-b', OPTIONS);
    assert.equal(online.spec?.initContainers, undefined);
  });

  it('mounts /etc/hosts, /etc/hostname and /etc/resolv.conf read-only from its own annotations', () => {
    const pod = buildPod(specFixture({ sandboxId: 'abc', image: 'busybox:1' }), 'corral-abc', OPTIONS);
    const mounts = pod.spec?.containers[0]?.volumeMounts?.filter((m) => m.name === 'corral-etc') ?? [];
    assert.deepEqual(mounts.map((m) => [m.mountPath, m.subPath, m.readOnly]), [['/etc/hosts', 'hosts', true], ['/etc/hostname', 'hostname', true], ['/etc/resolv.conf', 'resolv.conf', true]]);
    assert.equal(pod.metadata?.annotations?.['corral.dev/etc-hostname'], 'sandbox-abc\n');
    assert.equal(pod.metadata?.annotations?.['corral.dev/etc-resolv-conf'], 'nameserver 10.0.0.10\n');
    assert.match(pod.metadata?.annotations?.['corral.dev/etc-hosts'] ?? '', /^127\.0\.0\.1\tlocalhost$/m);
    // Without a usable resolv.conf the kubelet's stays.
    const kubelets = buildPod(specFixture({ sandboxId: 'abc', image: 'busybox:1' }), 'corral-abc', { ...OPTIONS, resolvConf: null });
    assert.equal(kubelets.spec?.containers[0]?.volumeMounts?.some((m) => m.mountPath === '/etc/resolv.conf'), false);
    assert.equal(serverResolvConf('nameserver 127.0.0.53\noptions edns0\n'), null);
    assert.equal(serverResolvConf('# x\nnameserver 10.96.0.10\nnameserver 127.0.0.1\nsearch a.svc b\noptions ndots:5\n'), 'nameserver 10.96.0.10\nsearch a.svc b\noptions ndots:5\n');
  });

  it('names Pods as DNS labels', () => {
    assert.equal(podName('AbC_1'), 'corral-abc-1');
    assert.ok(podName('x'.repeat(100)).length <= 63);
  });

  it('parses quantities and exec statuses', () => {
    assert.equal(parseQuantity('265142110657'), 265142110657);
    assert.equal(parseQuantity('87473Mi'), 87473 * 1024 ** 2);
    assert.equal(parseQuantity('500m'), 0.5);
    assert.ok(Number.isNaN(parseQuantity('12Qi')));
    assert.equal(exitCodeOf({ status: 'Success' }), 0);
    assert.equal(exitCodeOf({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '3' }] } }), 3);
    assert.equal(exitCodeOf({ status: 'Failure', message: 'error executing command' }), undefined);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../config.js';
import { specFixture } from '../../testing/sandbox-fixture.js';
import { serverPeersOf } from './kubernetes-driver.js';
import { ALWAYS_BLOCKED_IPV4, buildNetworkPolicy, CLUSTER_DNS_RULE, egressRules, networkPolicyProblem } from './network-policy.js';
import { buildPod, hasNetworkInterface } from './pod-spec.js';

const OPTIONS = { instance: 'inst', namespace: 'ns', serverPeers: [] };
const allow = (...allowlist: string[]) => ({ allowlist, denylist: null });
const deny = (...denylist: string[]) => ({ allowlist: null, denylist });
const OPEN = { allowlist: null, denylist: null };
const EVERYTHING_PUBLIC = { ipBlock: { cidr: '0.0.0.0/0', except: [...ALWAYS_BLOCKED_IPV4] } };

describe('kubernetes NetworkPolicy', () => {
  it('selects only its sandbox, takes no ingress without a configured server, and lets nothing out for an empty allow list', () => {
    assert.deepEqual(buildNetworkPolicy('Sbx_1', 'corral-sbx-1', allow(), OPTIONS), {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: {
        name: 'corral-sbx-1',
        namespace: 'ns',
        labels: { 'corral.dev/sandbox-id': 'Sbx_1', 'corral.dev/instance': 'inst', 'app.kubernetes.io/managed-by': 'corral' },
        annotations: { 'corral.dev/sandbox-id': 'Sbx_1', 'corral.dev/egress-policy': '{"allowlist":[],"denylist":null}' },
      },
      spec: {
        podSelector: { matchLabels: { 'corral.dev/sandbox-id': 'Sbx_1', 'corral.dev/instance': 'inst' } },
        policyTypes: ['Ingress', 'Egress'],
      },
    });
  });

  it('selects the labels the Pod carries', () => {
    const spec = specFixture({ sandboxId: 'AbC.9', image: 'busybox:1' });
    const pod = buildPod(spec, 'corral-abc-9', { instance: 'inst', namespace: 'ns', runtimeClass: null, envSecret: 'env', pullSecret: null, cpuRequestFraction: 1, helperConfigMap: 'x', resolvConf: null });
    const selector = buildNetworkPolicy(spec.sandboxId, 'corral-abc-9', OPEN, OPTIONS).spec?.podSelector?.matchLabels ?? {};
    assert.ok(Object.keys(selector).length === 2);
    for (const [key, value] of Object.entries(selector)) assert.equal(pod.metadata?.labels?.[key], value, key);
  });

  it('admits connections only from the configured server peers, on any port', () => {
    const peers = [{ ipBlock: { cidr: '192.0.2.10/32' } }, { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'corral' } }, podSelector: { matchLabels: { app: 'corral' } } }];
    const policy = buildNetworkPolicy('s', 'corral-s', OPEN, { ...OPTIONS, serverPeers: peers });
    assert.deepEqual(policy.spec?.ingress, [{ _from: peers }]);
  });

  it('open egress: every IPv4 address but private, CGNAT, loopback, link-local (metadata) and reserved ranges, and DNS to the cluster DNS Pods', () => {
    assert.deepEqual(egressRules(OPEN), [{ to: [EVERYTHING_PUBLIC] }, CLUSTER_DNS_RULE]);
    assert.deepEqual(egressRules(deny()), egressRules(OPEN));
    assert.deepEqual(CLUSTER_DNS_RULE, {
      to: [{ namespaceSelector: {}, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }],
      ports: [
        { protocol: 'UDP', port: 53 },
        { protocol: 'TCP', port: 53 },
      ],
    });
    assert.ok(ALWAYS_BLOCKED_IPV4.includes('169.254.0.0/16') && ALWAYS_BLOCKED_IPV4.includes('10.0.0.0/8'));
  });

  it('an allow list opens exactly its IPv4 entries, never a blocked range, and gives no DNS', () => {
    assert.deepEqual(egressRules(allow('203.0.113.7', '198.51.100.0/24', '10.1.2.3', '169.254.169.254', '2001:db8::1', '::ffff:10.0.0.1')), [
      { to: [{ ipBlock: { cidr: '203.0.113.7/32' } }, { ipBlock: { cidr: '198.51.100.0/24' } }] },
    ]);
    // A range holding blocked ranges opens it without them.
    assert.deepEqual(egressRules(allow('96.0.0.0/3')), [{ to: [{ ipBlock: { cidr: '96.0.0.0/3', except: ['100.64.0.0/10', '127.0.0.0/8'] } }] }]);
    assert.deepEqual(egressRules(allow('0.0.0.0/0', '203.0.113.7')), [{ to: [EVERYTHING_PUBLIC] }]);
    // Nothing but blocked addresses: nothing out at all.
    assert.deepEqual(egressRules(allow('10.0.0.0/8', '192.168.1.1')), []);
  });

  it('a deny list closes its IPv4 entries on top of the blocked ranges', () => {
    assert.deepEqual(egressRules(deny('203.0.113.0/24', '10.0.0.5', '2001:db8::/32', '203.0.113.9')), [
      { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: [...ALWAYS_BLOCKED_IPV4, '203.0.113.0/24'] } }] },
      CLUSTER_DNS_RULE,
    ]);
    // A denied range holding blocked ones replaces them in the except list.
    assert.deepEqual(egressRules(deny('96.0.0.0/3'))[0]?.to?.[0]?.ipBlock?.except, [...ALWAYS_BLOCKED_IPV4.filter((c) => c !== '100.64.0.0/10' && c !== '127.0.0.0/8'), '96.0.0.0/3']);
    assert.deepEqual(egressRules(deny('0.0.0.0/0')), [CLUSTER_DNS_RULE]);
  });

  it('closes the operator\'s extra blocked ranges too', () => {
    assert.deepEqual(egressRules(OPEN, ['203.0.113.0/24', '10.9.0.0/16']), [
      { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: [...ALWAYS_BLOCKED_IPV4, '203.0.113.0/24'] } }] },
      CLUSTER_DNS_RULE,
    ]);
    assert.deepEqual(egressRules(allow('203.0.113.5', '198.51.100.1'), ['203.0.113.0/24']), [{ to: [{ ipBlock: { cidr: '198.51.100.1/32' } }] }]);
  });

  it('refuses domain entries, naming them, rather than allow more or less than the policy says', () => {
    assert.equal(networkPolicyProblem(allow('203.0.113.7')), null);
    assert.equal(networkPolicyProblem(OPEN), null);
    const problem = networkPolicyProblem(allow('203.0.113.7', 'api.example.com'));
    assert.equal(problem?.list, 'allowlist');
    assert.equal(problem?.index, 1);
    assert.match(problem?.reason ?? '', /"api\.example\.com" is a domain name; .*IP blocks only/);
    assert.equal(networkPolicyProblem(deny('*.example.com'))?.list, 'denylist');
    assert.throws(() => egressRules(deny('*.example.com')), /denylist\[0\]: "\*\.example\.com" is a domain name/);
  });

  it('a sandbox without network, or with an empty allow list, loses its interface whether or not NetworkPolicies are enforced', () => {
    assert.equal(hasNetworkInterface(specFixture({ sandboxId: 'n', image: 'busybox:1', networkAccess: false })), false);
    assert.equal(hasNetworkInterface(specFixture({ sandboxId: 'n', image: 'busybox:1', networkAccess: true, egress: allow() })), false);
    assert.equal(hasNetworkInterface(specFixture({ sandboxId: 'n', image: 'busybox:1', networkAccess: true, egress: allow('203.0.113.7') })), true);
    assert.equal(hasNetworkInterface(specFixture({ sandboxId: 'n', image: 'busybox:1', networkAccess: true })), true);
    const options = { instance: 'i', namespace: 'ns', runtimeClass: null, envSecret: 'env', pullSecret: null, cpuRequestFraction: 1, helperConfigMap: 'x', resolvConf: null };
    const pod = buildPod(specFixture({ sandboxId: 'a', image: 'busybox:1', networkAccess: true, egress: allow() }), 'corral-a', options);
    assert.equal(pod.spec?.initContainers?.[0]?.name, 'corral-netdown');
    assert.equal(pod.metadata?.annotations?.['corral.dev/network-access'], 'false');
  });
});

describe('kubernetes driver settings', () => {
  it('CORRAL_K8S_NETWORK_POLICY defaults to required and takes off', () => {
    assert.equal(loadConfig({ env: {} }).k8sNetworkPolicy, 'required');
    assert.equal(loadConfig({ env: { CORRAL_K8S_NETWORK_POLICY: 'off' } }).k8sNetworkPolicy, 'off');
    assert.throws(() => loadConfig({ env: { CORRAL_K8S_NETWORK_POLICY: 'maybe' } }), /CORRAL_K8S_NETWORK_POLICY must be one of required, off/);
  });

  it('turns CORRAL_K8S_SERVER_CIDRS and CORRAL_K8S_SERVER_PODS into the only ingress peers', () => {
    const none = loadConfig({ env: {} });
    assert.deepEqual(serverPeersOf(none), []);
    const config = loadConfig({ env: { CORRAL_K8S_SERVER_CIDRS: '192.0.2.10, 198.51.100.0/28', CORRAL_K8S_SERVER_PODS: 'corral/app.kubernetes.io/name=corral,tier=api' } });
    assert.deepEqual(serverPeersOf(config), [
      { ipBlock: { cidr: '192.0.2.10/32' } },
      { ipBlock: { cidr: '198.51.100.0/28' } },
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'corral' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'corral', tier: 'api' } } },
    ]);
    // Server Pods in the sandboxes' namespace: a selector there could match sandboxes.
    assert.throws(() => serverPeersOf(loadConfig({ env: { CORRAL_K8S_SERVER_PODS: 'corral-sandboxes/app=corral' } })), /sandboxes' namespace/);
    for (const raw of ['app=corral', 'corral/', 'corral/app', 'Corral/app=x', 'corral/app=bad value']) {
      assert.throws(() => loadConfig({ env: { CORRAL_K8S_SERVER_PODS: raw } }), /CORRAL_K8S_SERVER_PODS must be <namespace>\//, raw);
    }
    for (const raw of ['10.0.0.0/33', 'example.com', '10.0.0.1/8/1', '::1/129']) {
      assert.throws(() => loadConfig({ env: { CORRAL_K8S_SERVER_CIDRS: raw } }), /CORRAL_K8S_SERVER_CIDRS must be a comma-separated list of CIDRs/, raw);
    }
    assert.deepEqual(loadConfig({ env: { CORRAL_K8S_BLOCKED_CIDRS: '203.0.113.0/24' } }).k8sBlockedCidrs, ['203.0.113.0/24']);
  });
});

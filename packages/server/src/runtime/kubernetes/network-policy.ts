import type { V1NetworkPolicy, V1NetworkPolicyEgressRule, V1NetworkPolicyPeer } from '@kubernetes/client-node';
import ipaddr from 'ipaddr.js';
import { CompiledEgressPolicy, parseEgressEntry } from '../egress/egress-policy.js';
import type { EgressPolicy } from '../egress/egress-policy.js';
import { LABEL_INSTANCE, LABEL_SANDBOX_ID, labelValue } from './pod-spec.js';

/**
 * IPv4 ranges a sandbox never reaches, whatever its policy says (the other drivers drop the host,
 * its subnets and link-local the same way): private (RFC 1918: where Pod, Service and node
 * networks usually live), carrier-grade NAT, loopback, link-local (cloud metadata at
 * 169.254.169.254), "this network", benchmarking, multicast and reserved.
 */
export const ALWAYS_BLOCKED_IPV4 = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '224.0.0.0/4',
  '240.0.0.0/4',
] as const;

/** Where sandboxes with open egress (or a deny list) send DNS: the cluster's DNS Pods (`k8s-app: kube-dns`, in any namespace), port 53. */
export const CLUSTER_DNS_RULE: V1NetworkPolicyEgressRule = {
  to: [{ namespaceSelector: {}, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }],
  ports: [
    { protocol: 'UDP', port: 53 },
    { protocol: 'TCP', port: 53 },
  ],
};

/** Annotation holding the Corral egress policy a NetworkPolicy was built from (JSON). */
export const ANNOTATION_EGRESS_POLICY = 'corral.dev/egress-policy';

/** What the NetworkPolicy builder needs besides the sandbox. */
export interface NetworkPolicyOptions {
  instance: string;
  namespace: string;
  /** Who may open connections to sandbox Pods: the Corral server (its Pods or addresses). Empty: nobody. */
  serverPeers: V1NetworkPolicyPeer[];
  /** More CIDRs than {@link ALWAYS_BLOCKED_IPV4} that no sandbox may reach (IPv4 or IPv6). */
  blockedCidrs?: string[];
}

/** Why a policy cannot be expressed as a NetworkPolicy (a domain entry), or null when it can. */
export function networkPolicyProblem(policy: EgressPolicy): { index: number; list: 'allowlist' | 'denylist'; reason: string } | null {
  for (const list of ['allowlist', 'denylist'] as const) {
    const entries = policy[list] ?? [];
    for (const [index, entry] of entries.entries()) {
      const parsed = parseEgressEntry(entry);
      if ('error' in parsed) return { index, list, reason: `${JSON.stringify(entry)} ${parsed.error}` };
      if (parsed.kind === 'domain') {
        return {
          index,
          list,
          reason: `${JSON.stringify(entry)} is a domain name; the kubernetes runtime driver enforces egress with NetworkPolicies, which hold IP blocks only: give IP addresses or CIDRs`,
        };
      }
    }
  }
  return null;
}

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses an address or CIDR, normalized to its network address. */
function parseCidr(text: string): Cidr {
  const cidr = text.includes('/') ? text : `${text}/${ipaddr.parse(text).kind() === 'ipv4' ? 32 : 128}`;
  const [address, prefix] = ipaddr.parseCIDR(cidr);
  const network = address.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr);
  return [network, prefix];
}

function cidrText([address, prefix]: Cidr): string {
  return `${address.toString()}/${prefix}`;
}

/** Whether `inner` lies within `outer` (same family, prefix at least as long, same network). */
function within(inner: Cidr, outer: Cidr): boolean {
  const [innerAddress, innerPrefix] = inner;
  const [outerAddress, outerPrefix] = outer;
  if (innerAddress.kind() !== outerAddress.kind() || innerPrefix < outerPrefix) return false;
  return innerAddress.match(outer);
}

/**
 * An ipBlock for `cidr` without the `blocked` ranges: null when a blocked range covers it, else
 * the blocked ranges strictly inside it as `except` (CIDRs are nested or disjoint).
 */
function ipBlockOutside(cidr: Cidr, blocked: Cidr[]): V1NetworkPolicyPeer | null {
  if (blocked.some((b) => within(cidr, b))) return null;
  const inside = blocked.filter((b) => within(b, cidr) && b[1] > cidr[1]);
  const except = [...new Set(inside.map(cidrText))];
  return { ipBlock: { cidr: cidrText(cidr), ...(except.length > 0 ? { except } : {}) } };
}

/** Drops ranges that lie within another of the list, and duplicates. */
function outermost(cidrs: Cidr[]): Cidr[] {
  const unique = [...new Map(cidrs.map((c) => [cidrText(c), c])).values()];
  return unique.filter((c) => !unique.some((o) => o !== c && within(c, o) && o[1] < c[1]));
}

/**
 * The egress rules of a policy:
 * - an empty allow list: none (no egress at all, DNS included);
 * - an allow list of addresses and CIDRs: exactly its IPv4 entries, minus the blocked ranges (an
 *   entry inside a blocked range is dropped; IPv6 entries too, since sandboxes have no IPv6, and an
 *   IPv4-mapped one must not open its IPv4 address; no DNS, since no name can be allowed);
 * - open or a deny list: every IPv4 address but the blocked ranges and the denied entries, and DNS
 *   to the cluster's DNS Pods. No IPv6 (as on the other drivers, sandboxes get none).
 * Domain entries are refused (`networkPolicyProblem`): a NetworkPolicy cannot name them.
 */
export function egressRules(policy: EgressPolicy, extraBlocked: string[] = []): V1NetworkPolicyEgressRule[] {
  const problem = networkPolicyProblem(policy);
  if (problem) throw new Error(`${problem.list}[${problem.index}]: ${problem.reason}`);
  const compiled = new CompiledEgressPolicy(policy);
  const blocked = outermost([...ALWAYS_BLOCKED_IPV4, ...extraBlocked].map(parseCidr));
  const entries = compiled.networks.filter((n) => n.family === 4).map((n) => parseCidr(`${n.address}/${n.prefix}`));
  if (compiled.mode === 'allow') {
    const to = outermost(entries).flatMap((cidr) => {
      const peer = ipBlockOutside(cidr, blocked);
      return peer ? [peer] : [];
    });
    return to.length > 0 ? [{ to }] : [];
  }
  const denied = compiled.mode === 'deny' ? entries : [];
  const everything = parseCidr('0.0.0.0/0');
  const closed = outermost([...blocked, ...denied].filter((c) => c[0].kind() === 'ipv4'));
  const rules: V1NetworkPolicyEgressRule[] = [];
  // A deny list naming 0.0.0.0/0 leaves no IPv4 address open.
  if (!closed.some((c) => c[1] === 0)) {
    const peer = ipBlockOutside(everything, closed);
    if (peer) rules.push({ to: [peer] });
  }
  rules.push(CLUSTER_DNS_RULE);
  return rules;
}

/** The labels selecting a sandbox's Pod (and labelling its NetworkPolicy). */
export function sandboxSelector(sandboxId: string, instance: string): Record<string, string> {
  return { [LABEL_SANDBOX_ID]: labelValue(sandboxId), [LABEL_INSTANCE]: labelValue(instance) };
}

/**
 * The NetworkPolicy of one sandbox, named as its Pod and selecting it by its sandbox and instance
 * labels. Ingress: only from `serverPeers` (the Corral server, on any port: the agent and exposed
 * ports), so never from another sandbox; none at all when no peer is configured. Egress:
 * {@link egressRules} of the sandbox's policy.
 */
export function buildNetworkPolicy(sandboxId: string, name: string, policy: EgressPolicy, options: NetworkPolicyOptions): V1NetworkPolicy {
  const selector = sandboxSelector(sandboxId, options.instance);
  const egress = egressRules(policy, options.blockedCidrs ?? []);
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: {
      name,
      namespace: options.namespace,
      labels: { ...selector, 'app.kubernetes.io/managed-by': 'corral' },
      annotations: { [LABEL_SANDBOX_ID]: sandboxId, [ANNOTATION_EGRESS_POLICY]: JSON.stringify(policy) },
    },
    spec: {
      podSelector: { matchLabels: selector },
      // Both types listed: a direction without rules allows nothing (the API server drops empty lists).
      policyTypes: ['Ingress', 'Egress'],
      ...(options.serverPeers.length > 0 ? { ingress: [{ _from: options.serverPeers }] } : {}),
      ...(egress.length > 0 ? { egress } : {}),
    },
  };
}

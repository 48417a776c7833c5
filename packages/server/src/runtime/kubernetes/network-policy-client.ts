import { NetworkingV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1NetworkPolicy } from '@kubernetes/client-node';
import { RuntimeError } from '../runtime.js';
import type { EgressPolicy } from '../egress/egress-policy.js';
import { buildNetworkPolicy } from './network-policy.js';
import type { NetworkPolicyOptions } from './network-policy.js';
import { LABEL_INSTANCE, labelValue } from './pod-spec.js';
import { apiErrorText, isApiStatus } from './api-errors.js';

/** A NetworkPolicy without its Pod is removed by the sweep only once it is this old (a create may be between the two). */
export const ORPHAN_AGE_MS = 5 * 60_000;


/**
 * The NetworkPolicies of one driver instance's sandboxes, through the cluster's API: one per
 * sandbox, named as its Pod (see network-policy.ts for what it holds).
 */
export class NetworkPolicyClient {
  private readonly api: NetworkingV1Api;

  constructor(
    config: KubeConfig,
    private readonly options: NetworkPolicyOptions,
  ) {
    this.api = config.makeApiClient(NetworkingV1Api);
  }

  private get namespace(): string {
    return this.options.namespace;
  }

  private ours(policy: V1NetworkPolicy): boolean {
    return policy.metadata?.labels?.[LABEL_INSTANCE] === labelValue(this.options.instance);
  }

  /**
   * Checks that the API server takes NetworkPolicies from this client (the API group exists and
   * RBAC allows creating them) with a server-side dry run; throws a RuntimeError saying what failed.
   */
  async check(): Promise<void> {
    const probe = buildNetworkPolicy('corral-probe', 'corral-netpol-probe', { allowlist: [], denylist: null }, this.options);
    try {
      await this.api.createNamespacedNetworkPolicy({ namespace: this.namespace, body: probe, dryRun: 'All' });
    } catch (error) {
      if (isApiStatus(error, 409)) return;
      throw new RuntimeError(
        'RUNTIME_ERROR',
        `cannot create NetworkPolicies in namespace ${this.namespace} (${apiErrorText(error)}); grant the server create/update/delete/list on networking.k8s.io networkpolicies there, or set CORRAL_K8S_NETWORK_POLICY=off (then egress policies are refused and sandboxes are not kept apart)`,
        { cause: error },
      );
    }
  }

  /** Creates the sandbox's NetworkPolicy, or replaces the spec of the one that exists (keeping its owner). */
  async apply(sandboxId: string, name: string, policy: EgressPolicy): Promise<V1NetworkPolicy> {
    const body = buildNetworkPolicy(sandboxId, name, policy, this.options);
    try {
      try {
        return await this.api.createNamespacedNetworkPolicy({ namespace: this.namespace, body });
      } catch (error) {
        if (!isApiStatus(error, 409)) throw error;
      }
      for (let attempt = 0; ; attempt++) {
        const current = await this.api.readNamespacedNetworkPolicy({ name, namespace: this.namespace });
        if (!this.ours(current)) throw new Error(`NetworkPolicy ${name} exists and belongs to another instance`);
        const next: V1NetworkPolicy = {
          ...body,
          metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion, ownerReferences: current.metadata?.ownerReferences },
        };
        try {
          return await this.api.replaceNamespacedNetworkPolicy({ name, namespace: this.namespace, body: next });
        } catch (error) {
          if (!isApiStatus(error, 409) || attempt >= 4) throw error;
        }
      }
    } catch (error) {
      throw new RuntimeError('RUNTIME_ERROR', `applying NetworkPolicy ${name}: ${apiErrorText(error)}`, { cause: error });
    }
  }

  /** Makes the Pod (by uid) the policy's owner, so the garbage collector deletes it with the Pod. */
  async own(name: string, pod: { name: string; uid: string }): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.api.readNamespacedNetworkPolicy({ name, namespace: this.namespace });
      current.metadata = { ...current.metadata, ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid }] };
      try {
        await this.api.replaceNamespacedNetworkPolicy({ name, namespace: this.namespace, body: current });
        return;
      } catch (error) {
        if (!isApiStatus(error, 409)) throw error;
      }
    }
  }

  /** The policy named `name`, or undefined. */
  async get(name: string): Promise<V1NetworkPolicy | undefined> {
    try {
      return await this.api.readNamespacedNetworkPolicy({ name, namespace: this.namespace });
    } catch (error) {
      if (isApiStatus(error, 404)) return undefined;
      throw new RuntimeError('RUNTIME_ERROR', `reading NetworkPolicy ${name}: ${apiErrorText(error)}`, { cause: error });
    }
  }

  /** Deletes the policy named `name` if it is this instance's; a missing one is fine. */
  async remove(name: string): Promise<void> {
    try {
      const current = await this.get(name);
      if (!current || !this.ours(current)) return;
      await this.api.deleteNamespacedNetworkPolicy({ name, namespace: this.namespace });
    } catch (error) {
      if (isApiStatus(error, 404)) return;
      if (error instanceof RuntimeError) throw error;
      throw new RuntimeError('RUNTIME_ERROR', `deleting NetworkPolicy ${name}: ${apiErrorText(error)}`, { cause: error });
    }
  }

  /** The names of this instance's NetworkPolicies. */
  async list(): Promise<V1NetworkPolicy[]> {
    const result = await this.api.listNamespacedNetworkPolicy({ namespace: this.namespace, labelSelector: `${LABEL_INSTANCE}=${labelValue(this.options.instance)}` });
    return result.items;
  }

  /**
   * Deletes this instance's policies whose Pod is gone (`podExists` false) and that are older than
   * {@link ORPHAN_AGE_MS} (a younger one may belong to a create in progress). Returns their names.
   */
  async sweep(podExists: (name: string) => boolean, now = Date.now()): Promise<string[]> {
    const removed: string[] = [];
    for (const policy of await this.list()) {
      const name = policy.metadata?.name ?? '';
      const created = policy.metadata?.creationTimestamp ? new Date(policy.metadata.creationTimestamp).getTime() : now;
      if (!name || podExists(name) || now - created < ORPHAN_AGE_MS) continue;
      await this.remove(name);
      removed.push(name);
    }
    return removed;
  }
}

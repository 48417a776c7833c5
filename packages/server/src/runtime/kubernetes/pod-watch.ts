import { CoreV1Api, makeInformer } from '@kubernetes/client-node';
import type { Informer, KubeConfig, ObjectCache, V1Pod } from '@kubernetes/client-node';

/** What happened to a Pod, as the watch saw it. */
export type PodChange = 'add' | 'update' | 'delete';

/**
 * An informer on the Pods of one namespace that carry a label selector: a cache kept current by a
 * watch (list once, then watch events; relisted after an error), and listeners for every change.
 * `list()`/`get()` read the cache, never the API server.
 */
export class PodWatch {
  private readonly informer: Informer<V1Pod> & ObjectCache<V1Pod>;
  private readonly listeners = new Set<(pod: V1Pod, change: PodChange) => void>();
  private started: Promise<void> | undefined;
  private stopped = false;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Names of Pods deleted since the watch started (the cache forgets them). */
  private readonly deleted = new Set<string>();

  constructor(
    config: KubeConfig,
    private readonly namespace: string,
    labelSelector: string,
  ) {
    const core = config.makeApiClient(CoreV1Api);
    this.informer = makeInformer<V1Pod>(
      config,
      `/api/v1/namespaces/${namespace}/pods`,
      () => core.listNamespacedPod({ namespace, labelSelector }),
      labelSelector,
    );
    const emit = (change: PodChange) => (pod: V1Pod) => {
      const name = pod.metadata?.name;
      if (name && change === 'delete') this.deleted.add(name);
      if (name && change === 'add') this.deleted.delete(name);
      if (this.deleted.size > 10_000) this.deleted.clear();
      for (const listener of this.listeners) {
        try {
          listener(pod, change);
        } catch {
          // A listener's failure is its own.
        }
      }
    };
    this.informer.on('add', emit('add'));
    this.informer.on('update', emit('update'));
    this.informer.on('delete', emit('delete'));
    this.informer.on('error', () => {
      // The informer stops on an error (a dropped watch, the API server restarting): relist and
      // watch again after a pause.
      if (this.stopped || this.restartTimer) return;
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (!this.stopped) void this.informer.start().catch(() => undefined);
      }, 1000);
      this.restartTimer.unref();
    });
  }

  /** Lists and starts watching; resolves once the cache holds the first list. */
  start(): Promise<void> {
    this.started ??= this.informer.start();
    return this.started;
  }

  /** The cached Pod named `name`. */
  get(name: string): V1Pod | undefined {
    return this.informer.get(name, this.namespace);
  }

  /** Every cached Pod. */
  list(): readonly V1Pod[] {
    return this.informer.list(this.namespace);
  }

  /** Calls `listener` on every change; returns the unsubscribe function. */
  onChange(listener: (pod: V1Pod, change: PodChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves with the first non-undefined value of `test` over the cached Pod (undefined while the
   * cache has none; `deleted` once the watch saw it go), checked now and on every change of it;
   * rejects after `timeoutMs` with `onTimeout()`.
   */
  waitFor<T>(name: string, test: (pod: V1Pod | undefined, deleted: boolean) => T | undefined, timeoutMs: number, onTimeout: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const check = (pod: V1Pod | undefined, deleted: boolean): void => {
        if (settled) return;
        let value: T | undefined;
        try {
          value = test(pod, deleted);
        } catch (error) {
          finish();
          reject(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (value === undefined) return;
        finish();
        resolve(value);
      };
      const unsubscribe = this.onChange((pod, change) => {
        if (pod.metadata?.name !== name) return;
        check(change === 'delete' ? undefined : pod, change === 'delete');
      });
      const timer = setTimeout(() => {
        if (settled) return;
        finish();
        reject(onTimeout());
      }, timeoutMs);
      const finish = (): void => {
        settled = true;
        clearTimeout(timer);
        unsubscribe();
      };
      check(this.get(name), false);
    });
  }

  /** Stops watching; the cache stays as it was. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.informer.stop().catch(() => undefined);
  }
}

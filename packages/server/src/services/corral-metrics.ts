import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from 'prom-client';
import type { ImagePullReport } from '../runtime/runtime.js';

/**
 * A stage of a sandbox's start, as `corral_sandbox_startup_seconds{stage}` records it:
 * - `queued`: created (the row's `createdAt`) until this replica claimed its provisioning (the
 *   admission queue's wait, PENDING);
 * - `runtime_create`: the driver's `create` (image pull, rootfs, start) until a process can be
 *   executed in it (the driver resolves only then: first exec ready);
 * - `total`: created until RUNNING was stored.
 */
export type StartupStage = 'queued' | 'runtime_create' | 'total';

/** How a gateway exec ended, for `corral_exec_duration_seconds{outcome}`. */
export type ExecOutcome = 'exited' | 'timeout' | 'aborted' | 'error';

/** Which way a file moved, for the transfer metrics. */
export type TransferDirection = 'upload' | 'download' | 'read';

/** Sandboxes per status and driver, for `corral_sandboxes`. */
export interface SandboxCount {
  status: string;
  driver: string;
  count: number;
}

/** What the gauges read at scrape time; `wiring.ts` and the gateway fill it in as they are built. */
export interface MetricSources {
  /** Active sandboxes of this deployment by status and driver. */
  sandboxes?: () => Promise<SandboxCount[]>;
  /** Creates waiting in the admission queue, and provisionings in flight. */
  admission?: () => { queued: number; provisioning: number };
  /** Operations waiting for a gateway slot, per pool (`exec`, `session`). */
  gatewayQueues?: () => Record<string, number>;
  /** The oci driver's warm pool: sandboxes started ahead of creates, and how many it aims for. */
  warmPool?: () => { ready: number; target: number } | undefined;
  /** Events waiting to be written. */
  eventBacklog?: () => number;
  /** Image builds and transfers waiting for a builder slot, and running. */
  imageBuilds?: () => { queued: number; running: number };
  /** This deployment's checkpoints by state. */
  checkpoints?: () => Promise<Array<{ state: string; count: number }>>;
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const STARTUP_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300];
/** 64 B to 64 MiB, ×4 per bucket. */
const BYTE_BUCKETS = exponentialBuckets(64, 4, 11);

/**
 * The server's Prometheus metrics (`GET /metrics`), in a registry of their own: tests start many
 * servers in one process, so nothing goes to prom-client's global default registry. Counters and
 * histograms are fed by the code that does the work (lifecycle, gateway, reconciler, HTTP hook);
 * gauges read their `sources` at scrape time. Every name starts `corral_` and carries its unit.
 */
export class CorralMetrics {
  readonly registry = new Registry();
  /** Filled in by whoever owns the state (see {@link MetricSources}); read at scrape time. */
  readonly sources: MetricSources = {};

  readonly startupSeconds = new Histogram({
    name: 'corral_sandbox_startup_seconds',
    help: 'Sandbox start by stage: queued (created until provisioning began), runtime_create (the driver until a process runs in it), total (created until RUNNING)',
    labelNames: ['stage', 'driver'] as const,
    buckets: STARTUP_BUCKETS,
    registers: [this.registry],
  });
  readonly startFailures = new Counter({
    name: 'corral_sandbox_start_failures_total',
    help: 'Sandboxes whose start failed, by error type',
    labelNames: ['driver', 'error_type'] as const,
    registers: [this.registry],
  });
  readonly execSeconds = new Histogram({
    name: 'corral_exec_duration_seconds',
    help: 'Gateway exec requests, from holding a slot until the command ended (exited, timeout, aborted by the client, error)',
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly execOutputBytes = new Histogram({
    name: 'corral_exec_output_bytes',
    help: 'Output a gateway exec kept (stdout plus stderr)',
    buckets: BYTE_BUCKETS,
    registers: [this.registry],
  });
  readonly transferSeconds = new Histogram({
    name: 'corral_file_transfer_duration_seconds',
    help: 'Gateway file transfers (upload, download, read), from holding a slot until done',
    labelNames: ['direction'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly transferBytes = new Histogram({
    name: 'corral_file_transfer_bytes',
    help: 'Bytes of gateway file transfers that completed',
    labelNames: ['direction'] as const,
    buckets: BYTE_BUCKETS,
    registers: [this.registry],
  });
  readonly gatewayWaitSeconds = new Histogram({
    name: 'corral_gateway_queue_wait_seconds',
    help: "Time gateway operations waited for a slot of the fair scheduler (only those that waited), per pool",
    labelNames: ['pool'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly httpSeconds = new Histogram({
    name: 'corral_http_request_duration_seconds',
    help: 'HTTP requests by route pattern, method and status class',
    labelNames: ['route', 'method', 'status_class'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly reconcileSeconds = new Histogram({
    name: 'corral_reconcile_pass_duration_seconds',
    help: 'Reconciler passes (timeouts, exits, orphans, purges)',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly eventsDropped = new Counter({
    name: 'corral_events_dropped_total',
    help: 'Sandbox events not stored: the write buffer was full, or the write failed',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly eventsWritten = new Counter({
    name: 'corral_events_written_total',
    help: 'Sandbox events stored',
    registers: [this.registry],
  });

  readonly webhookDeliveries = new Counter({
    name: 'corral_webhook_deliveries_total',
    help: 'Webhook delivery attempts by result: delivered (2xx), retrying (failed, another attempt is due later), failed (failed, given up)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly webhookDeliverySeconds = new Histogram({
    name: 'corral_webhook_delivery_duration_seconds',
    help: 'Webhook delivery attempts, from the request until the answer ended or failed, by outcome (success, failure)',
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly webhookEventsDropped = new Counter({
    name: 'corral_webhook_events_dropped_total',
    help: 'Sandbox events no webhook delivery was made for: the delivery queue was full, or storing the deliveries failed',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly imageBuilds = new Counter({
    name: 'corral_image_builds_total',
    help: 'Image builds (Dockerfile) and transfers (source_image) that ended, by kind and result',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
  });
  readonly imageBuildSeconds = new Histogram({
    name: 'corral_image_build_duration_seconds',
    help: 'Image builds and transfers from start (BUILDING) to their end, by kind and result',
    labelNames: ['kind', 'result'] as const,
    buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    registers: [this.registry],
  });

  readonly imagePulls = new Counter({
    name: 'corral_image_pulls_total',
    help: 'Image pulls from registries the runtime driver made for sandbox creates and builds (cached images are no pull), by driver and result',
    labelNames: ['driver', 'result'] as const,
    registers: [this.registry],
  });
  readonly imagePullSeconds = new Histogram({
    name: 'corral_image_pull_duration_seconds',
    help: 'Wall time of image pulls from registries, by driver and result',
    labelNames: ['driver', 'result'] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  readonly imagePullBytes = new Counter({
    name: 'corral_image_pull_bytes_total',
    help: 'Bytes downloaded by image pulls, where the driver counts them (oci)',
    labelNames: ['driver'] as const,
    registers: [this.registry],
  });
  readonly checkpointCaptureSeconds = new Histogram({
    name: 'corral_checkpoint_capture_seconds',
    help: 'Checkpoint captures from asked for until stored (durable) or failed, by driver, memory and result',
    labelNames: ['driver', 'memory', 'result'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });

  constructor(options: { /** Node.js process metrics (`process_*`, `nodejs_*`); default true. */ processMetrics?: boolean } = {}) {
    const sources = this.sources;
    new Gauge({
      name: 'corral_sandboxes',
      help: "This deployment's active sandboxes by status and driver",
      labelNames: ['status', 'driver'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        // A store that cannot answer leaves the gauge empty for this scrape rather than failing it.
        const rows = await Promise.resolve(sources.sandboxes?.()).catch(() => undefined);
        for (const row of rows ?? []) this.set({ status: row.status, driver: row.driver }, row.count);
      },
    });
    new Gauge({
      name: 'corral_checkpoints',
      help: "This deployment's checkpoints by state",
      labelNames: ['state'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        const rows = await Promise.resolve(sources.checkpoints?.()).catch(() => undefined);
        for (const row of rows ?? []) this.set({ state: row.state }, row.count);
      },
    });
    new Gauge({
      name: 'corral_image_builds',
      help: 'Image builds and transfers on this replica: queued (waiting for a builder slot) and running',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const builds = sources.imageBuilds?.() ?? { queued: 0, running: 0 };
        this.set({ state: 'queued' }, builds.queued);
        this.set({ state: 'running' }, builds.running);
      },
    });
    new Gauge({
      name: 'corral_admission_queue_length',
      help: 'Creates waiting in the admission queue (PENDING) on this replica',
      registers: [this.registry],
      collect() {
        this.set(sources.admission?.().queued ?? 0);
      },
    });
    new Gauge({
      name: 'corral_provisioning_in_flight',
      help: 'Sandboxes this replica is provisioning now',
      registers: [this.registry],
      collect() {
        this.set(sources.admission?.().provisioning ?? 0);
      },
    });
    new Gauge({
      name: 'corral_gateway_queue_depth',
      help: 'Gateway operations waiting for a slot, per pool (exec: exec and file transfers; session: streaming sessions)',
      labelNames: ['pool'] as const,
      registers: [this.registry],
      collect() {
        for (const [pool, depth] of Object.entries(sources.gatewayQueues?.() ?? {})) this.set({ pool }, depth);
      },
    });
    new Gauge({
      name: 'corral_warm_pool_sandboxes',
      help: "The oci driver's warm pool: ready (started, unclaimed) and target (what recent demand asks for)",
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const pool = sources.warmPool?.();
        if (!pool) return;
        this.set({ state: 'ready' }, pool.ready);
        this.set({ state: 'target' }, pool.target);
      },
    });
    new Gauge({
      name: 'corral_events_backlog',
      help: 'Sandbox events buffered, not yet written to the store',
      registers: [this.registry],
      collect() {
        this.set(sources.eventBacklog?.() ?? 0);
      },
    });
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
  }

  /** Records one start stage, in seconds from milliseconds (negative spans, from clock steps, count as 0). */
  startup(stage: StartupStage, driver: string, ms: number): void {
    this.startupSeconds.observe({ stage, driver }, Math.max(0, ms) / 1000);
  }

  /** The registry's exposition, in Prometheus text format. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Records a driver's image pull (a `RuntimeEvent` of type `image-pulled`). */
  observeImagePull(driver: string, report: ImagePullReport): void {
    const result = report.ok ? 'ok' : 'failed';
    this.imagePulls.inc({ driver, result });
    this.imagePullSeconds.observe({ driver, result }, report.seconds);
    if (report.bytes !== null && report.bytes > 0) this.imagePullBytes.inc({ driver }, report.bytes);
  }
}

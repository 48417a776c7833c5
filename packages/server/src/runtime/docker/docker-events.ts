import type Docker from 'dockerode';

/** One container event from Docker's `/events` stream, the fields the driver uses. */
export interface DockerContainerEvent {
  action: string;
  containerId: string;
  attributes: Record<string, string>;
  timeNano: number;
}

/**
 * Follows Docker's event stream for containers carrying `label`, and reconnects (resuming from the
 * last event seen, skipping duplicates) when the stream drops, e.g. when dockerd restarts.
 */
export class DockerEventWatcher {
  private stream: NodeJS.ReadableStream | undefined;
  private closed = false;
  private lastTimeNano = 0;
  private readonly seen = new Set<string>();
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly docker: Docker,
    private readonly label: string,
    private readonly actions: string[],
    private readonly onEvent: (event: DockerContainerEvent) => void,
    private readonly reconnectDelayMs = 500,
  ) {}

  /** Opens the stream; resolves once Docker accepted the subscription. */
  async start(): Promise<void> {
    if (this.closed) return;
    const since = this.lastTimeNano > 0 ? Math.floor(this.lastTimeNano / 1e9) : undefined;
    let stream: NodeJS.ReadableStream;
    try {
      stream = await this.docker.getEvents({
        ...(since !== undefined ? { since } : {}),
        filters: { type: ['container'], label: [this.label], event: this.actions },
      });
    } catch {
      this.scheduleReconnect();
      return;
    }
    if (this.closed) {
      (stream as unknown as { destroy?: () => void }).destroy?.();
      return;
    }
    this.stream = stream;
    let buffer = '';
    stream.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) this.handleLine(line);
      }
    });
    const dropped = (): void => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.scheduleReconnect();
    };
    stream.on('end', dropped);
    stream.on('close', dropped);
    stream.on('error', dropped);
  }

  private handleLine(line: string): void {
    let raw: { Action?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; timeNano?: number };
    try {
      raw = JSON.parse(line) as typeof raw;
    } catch {
      return;
    }
    const event: DockerContainerEvent = {
      action: raw.Action ?? '',
      containerId: raw.Actor?.ID ?? '',
      attributes: raw.Actor?.Attributes ?? {},
      timeNano: raw.timeNano ?? 0,
    };
    const key = `${event.timeNano}/${event.containerId}/${event.action}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    if (this.seen.size > 10_000) this.seen.clear();
    this.lastTimeNano = Math.max(this.lastTimeNano, event.timeNano);
    this.onEvent(event);
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.start();
    }, this.reconnectDelayMs);
    this.reconnectTimer.unref();
  }

  /** Stops following; no reconnects afterwards. */
  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const stream = this.stream as unknown as { destroy?: () => void } | undefined;
    this.stream = undefined;
    stream?.destroy?.();
  }
}

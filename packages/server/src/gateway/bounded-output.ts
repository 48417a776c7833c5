import type { Readable } from 'node:stream';

/**
 * Keeps the first `maxBytes` of a stream and counts the rest, which it reads and drops so the
 * writer never blocks. `text()` decodes what was kept as UTF-8 and appends a truncation marker
 * when anything was dropped.
 */
export class BoundedOutput {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;

  constructor(
    stream: Readable,
    private readonly maxBytes: number,
  ) {
    stream.on('data', (chunk: Buffer) => this.add(chunk));
    // A broken stream ends the output; the process's exit decides the outcome.
    stream.on('error', () => undefined);
  }

  private add(chunk: Buffer): void {
    const room = this.maxBytes - this.kept;
    if (room >= chunk.length) {
      this.chunks.push(chunk);
      this.kept += chunk.length;
      return;
    }
    if (room > 0) {
      this.chunks.push(chunk.subarray(0, room));
      this.kept += room;
    }
    this.dropped += chunk.length - Math.max(room, 0);
  }

  /** Bytes dropped past the limit. */
  get droppedBytes(): number {
    return this.dropped;
  }

  /** What was kept, as bytes, without any marker. */
  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.kept);
  }

  /** What was kept, as text, with `[corral: output truncated …]` appended when bytes were dropped. */
  text(): string {
    const body = this.bytes().toString('utf8');
    if (this.dropped === 0) return body;
    return `${body}\n[corral: output truncated: ${this.dropped} more bytes not shown (limit ${this.maxBytes} bytes per stream)]\n`;
  }
}

import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { OutputReservation } from './output-budget.js';

/**
 * Keeps the first `maxBytes` of a stream and counts the rest, which it reads and drops so the
 * writer never blocks. With a shared `budget`, every kept byte is also reserved from it, and
 * output past what the budget grants is dropped too; `dispose()` gives the reservation back.
 * `text()` decodes what was kept as UTF-8 and appends a truncation marker when anything was
 * dropped.
 */
export class BoundedOutput {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;
  private reserved = 0;
  private budgetExhausted = false;

  constructor(
    stream: Readable,
    private readonly maxBytes: number,
    private readonly budget?: OutputReservation,
  ) {
    stream.on('data', (chunk: Buffer) => this.add(chunk));
    // A broken stream ends the output; the process's exit decides the outcome.
    stream.on('error', () => undefined);
  }

  private add(chunk: Buffer): void {
    let room = this.maxBytes - this.kept;
    if (this.budget && room > 0) {
      const want = Math.min(room, chunk.length);
      const granted = this.budgetExhausted ? 0 : this.budget.reserve(want);
      this.reserved += granted;
      if (granted < want) this.budgetExhausted = true;
      room = granted;
    }
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

  /** Gives this output's share of the shared budget back (call once the answer is built). */
  dispose(): void {
    this.budget?.release(this.reserved);
    this.reserved = 0;
  }

  /** Bytes dropped past the limit. */
  get droppedBytes(): number {
    return this.dropped;
  }

  /** How many bytes were kept. */
  get keptBytes(): number {
    return this.kept;
  }

  /** What was kept, as bytes, without any marker. */
  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.kept);
  }

  /** What was kept, as text, with `[corral: output truncated …]` appended when bytes were dropped. */
  text(): string {
    return this.bytes().toString('utf8') + this.marker();
  }

  /**
   * The same text as `text()`, JSON-escaped (without the surrounding quotes), in pieces of at
   * most `sliceBytes` of output each, so a large output can be serialized a slice at a time.
   */
  *jsonSlices(sliceBytes = 64 * 1024): Generator<string> {
    const decoder = new StringDecoder('utf8');
    for (const chunk of this.chunks) {
      for (let at = 0; at < chunk.length; at += sliceBytes) {
        const text = decoder.write(chunk.subarray(at, at + sliceBytes));
        if (text !== '') yield JSON.stringify(text).slice(1, -1);
      }
    }
    const tail = decoder.end() + this.marker();
    if (tail !== '') yield JSON.stringify(tail).slice(1, -1);
  }

  private marker(): string {
    if (this.dropped === 0) return '';
    const why = this.budgetExhausted ? `the server's exec output memory (CORRAL_EXEC_OUTPUT_BUDGET_BYTES, or this user's share CORRAL_EXEC_OUTPUT_BUDGET_PER_USER_BYTES) is in use by other calls` : `limit ${this.maxBytes} bytes per stream`;
    return `\n[corral: output truncated: ${this.dropped} more bytes not shown (${why})]\n`;
  }
}

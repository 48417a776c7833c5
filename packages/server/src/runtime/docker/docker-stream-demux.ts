import { PassThrough, Writable } from 'node:stream';

/**
 * Splits Docker's multiplexed attach stream (8-byte frame headers: stream type, 3 zero bytes,
 * big-endian length) into stdout and stderr streams. Honours back-pressure: a frame is only
 * acknowledged once the target stream accepted it. Both outputs end when the input ends.
 */
export class DockerStreamDemux extends Writable {
  /** Frames of type 1 (stdout). */
  readonly stdout = new PassThrough();
  /** Frames of type 2 (stderr); type 0 is folded in here too. */
  readonly stderr = new PassThrough();
  private pending: Buffer = Buffer.alloc(0);
  private frameType = -1;
  private frameLeft = 0;

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    this.drain(callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.stdout.end();
    this.stderr.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.stdout.end();
    this.stderr.end();
    callback(error);
  }

  /** Parses as much of `pending` as possible; calls `done` when it has been consumed. */
  private drain(done: (error?: Error | null) => void): void {
    for (;;) {
      if (this.frameLeft === 0) {
        if (this.pending.length < 8) {
          done();
          return;
        }
        this.frameType = this.pending.readUInt8(0);
        this.frameLeft = this.pending.readUInt32BE(4);
        this.pending = this.pending.subarray(8);
        continue;
      }
      if (this.pending.length === 0) {
        done();
        return;
      }
      const take = Math.min(this.frameLeft, this.pending.length);
      const piece = this.pending.subarray(0, take);
      this.pending = this.pending.subarray(take);
      this.frameLeft -= take;
      const target = this.frameType === 1 ? this.stdout : this.stderr;
      if (!target.write(piece)) {
        target.once('drain', () => this.drain(done));
        return;
      }
    }
  }
}

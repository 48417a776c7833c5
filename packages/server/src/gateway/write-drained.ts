import type { Writable } from 'node:stream';

/**
 * Writes `chunk` to `stream` and, when the stream's buffer is over its high-water mark, resolves
 * only once it has drained (or closed, or failed), so a reader that does not read holds back
 * the writer instead of filling the server's memory. A stream already ended or destroyed is
 * skipped.
 */
export async function writeDrained(stream: Writable, chunk: Buffer): Promise<void> {
  if (stream.writableEnded || stream.destroyed) return;
  if (stream.write(chunk)) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

import type { Readable } from 'node:stream';

/** Resolves once `stream` has ended, closed or failed (at once when it already has); never rejects. */
export function streamSettled(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.readableEnded || stream.destroyed) {
      resolve();
      return;
    }
    stream.once('end', () => resolve());
    stream.once('close', () => resolve());
    stream.once('error', () => resolve());
  });
}

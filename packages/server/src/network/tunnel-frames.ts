/**
 * The tunnel link's framing: every WebSocket binary message is one frame,
 * `[op: u8][stream id: u32 BE][payload]`. The server opens streams (one per incoming
 * connection); both sides send data, a half-close (END) or an abort (RESET, payload = reason).
 */
export const FRAME = { OPEN: 1, DATA: 2, END: 3, RESET: 4 } as const;

/** A frame's operation. */
export type FrameOp = (typeof FRAME)[keyof typeof FRAME];

/** Builds one frame. */
export function encodeFrame(op: FrameOp, streamId: number, payload?: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(op, 0);
  header.writeUInt32BE(streamId, 1);
  return payload && payload.length > 0 ? Buffer.concat([header, payload]) : header;
}

/** Splits a frame; null when it is too short. */
export function decodeFrame(data: Buffer): { op: number; streamId: number; payload: Buffer } | null {
  if (data.length < 5) return null;
  return { op: data.readUInt8(0), streamId: data.readUInt32BE(1), payload: data.subarray(5) };
}

/** WebSocket close codes the server ends a link with; the client stops reconnecting on these. */
export const LINK_CLOSE = { NOT_FOUND: 4404, EXPIRED: 4410, FORBIDDEN: 4403, REPLACED: 4409 } as const;

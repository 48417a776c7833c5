/**
 * Protocol Buffers binary wire format, by hand: enough for the small `command_session`
 * messages (varints, zigzag `sint32`, length-delimited bytes/strings/messages; other wire types
 * are skipped when decoding).
 */

/** Wire type of varint fields (`uint32`, `bool`, enums, `sint32`). */
export const WIRE_VARINT = 0;
/** Wire type of 64-bit fixed fields (only ever skipped here). */
export const WIRE_FIXED64 = 1;
/** Wire type of length-delimited fields (`string`, `bytes`, messages, map entries). */
export const WIRE_LEN = 2;
/** Wire type of 32-bit fixed fields (only ever skipped here). */
export const WIRE_FIXED32 = 5;

/** A message that is not valid protobuf. */
export class ProtoDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoDecodeError';
  }
}

/** Builds one encoded message; fields are written in call order. */
export class ProtoWriter {
  private readonly chunks: Buffer[] = [];
  private pending: number[] = [];

  private flushPending(): void {
    if (this.pending.length > 0) {
      this.chunks.push(Buffer.from(this.pending));
      this.pending = [];
    }
  }

  /** Writes an unsigned varint of at most 32 bits, or a negative int32 as its 10-byte form. */
  varint(value: number): this {
    if (value < 0) {
      // int32 negatives are sign-extended to 64 bits: low 32 bits, then 0xffffffff.
      let lo = value >>> 0;
      for (let i = 0; i < 4; i++) {
        this.pending.push((lo & 0x7f) | 0x80);
        lo >>>= 7;
      }
      this.pending.push((lo & 0x0f) | 0x70 | 0x80);
      for (let i = 0; i < 4; i++) this.pending.push(0xff);
      this.pending.push(0x01);
      return this;
    }
    let v = value >>> 0;
    while (v > 0x7f) {
      this.pending.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    this.pending.push(v);
    return this;
  }

  /** Writes a field key. */
  tag(field: number, wireType: number): this {
    return this.varint(((field << 3) | wireType) >>> 0);
  }

  /** `uint32` / enum field. */
  uint32(field: number, value: number): this {
    return this.tag(field, WIRE_VARINT).varint(value);
  }

  /** `sint32` field (zigzag). */
  sint32(field: number, value: number): this {
    return this.tag(field, WIRE_VARINT).varint(((value << 1) ^ (value >> 31)) >>> 0);
  }

  /** `bool` field. */
  bool(field: number, value: boolean): this {
    return this.tag(field, WIRE_VARINT).varint(value ? 1 : 0);
  }

  /** `bytes` field (also nested messages, already encoded). */
  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LEN).varint(value.length);
    this.flushPending();
    this.chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    return this;
  }

  /** `string` field (UTF-8). */
  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  /** The encoded message. */
  finish(): Buffer {
    this.flushPending();
    return Buffer.concat(this.chunks);
  }
}

/** One decoded field: its number, wire type and value (a number for varints, bytes otherwise). */
export type ProtoField =
  | { field: number; wireType: typeof WIRE_VARINT; value: number }
  | { field: number; wireType: typeof WIRE_LEN; value: Buffer }
  | { field: number; wireType: typeof WIRE_FIXED64 | typeof WIRE_FIXED32; value: Buffer };

/**
 * Reads a varint at `pos`. Returns its low 32 bits as an unsigned number (enough for every
 * field here; an int32 negative comes back as its two's-complement uint32) and the next offset.
 */
function readVarint(buf: Buffer, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new ProtoDecodeError('Truncated varint');
    const byte = buf[pos++] as number;
    if (shift < 32) result = (result | ((byte & 0x7f) << shift)) >>> 0;
    shift += 7;
    if ((byte & 0x80) === 0) return [result >>> 0, pos];
  }
  throw new ProtoDecodeError('Varint longer than 10 bytes');
}

/** Splits an encoded message into its fields, in wire order. Groups are refused. */
export function readFields(buf: Buffer): ProtoField[] {
  const fields: ProtoField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    let key: number;
    [key, pos] = readVarint(buf, pos);
    const field = key >>> 3;
    const wireType = key & 7;
    if (field === 0) throw new ProtoDecodeError('Field number 0');
    switch (wireType) {
      case WIRE_VARINT: {
        let value: number;
        [value, pos] = readVarint(buf, pos);
        fields.push({ field, wireType, value });
        break;
      }
      case WIRE_LEN: {
        let length: number;
        [length, pos] = readVarint(buf, pos);
        if (pos + length > buf.length) throw new ProtoDecodeError('Truncated length-delimited field');
        fields.push({ field, wireType, value: buf.subarray(pos, pos + length) });
        pos += length;
        break;
      }
      case WIRE_FIXED64:
      case WIRE_FIXED32: {
        const size = wireType === WIRE_FIXED64 ? 8 : 4;
        if (pos + size > buf.length) throw new ProtoDecodeError('Truncated fixed field');
        fields.push({ field, wireType, value: buf.subarray(pos, pos + size) });
        pos += size;
        break;
      }
      default:
        throw new ProtoDecodeError(`Unsupported wire type ${wireType}`);
    }
  }
  return fields;
}

/** The zigzag-decoded `sint32` of a varint's low 32 bits. */
export function zigzagDecode(value: number): number {
  return (value >>> 1) ^ -(value & 1);
}

/** A varint field's value as a signed int32 (enums). */
export function toInt32(value: number): number {
  return value | 0;
}

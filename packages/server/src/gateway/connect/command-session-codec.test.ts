import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import {
  type CommandSessionEvent,
  type ListResponse,
  decodeCommandSpec,
  decodeConnectRequest,
  decodeEvent,
  decodeListResponse,
  decodeSendInputRequest,
  decodeSendSignalRequest,
  decodeStartRequest,
  decodeStartResponse,
  decodeUpdateRequest,
  encodeCommandSpec,
  encodeConnectRequest,
  encodeEvent,
  encodeListResponse,
  encodeSendInputRequest,
  encodeSendSignalRequest,
  encodeStartRequest,
  encodeStartResponse,
  encodeUpdateRequest,
} from './command-session-codec.js';
import { ConnectError, FLAG_COMPRESSED, FLAG_END_STREAM, decodeEnvelopes, endStreamEnvelope, envelope, parseTimeoutMs, singleStreamMessage } from './connect-protocol.js';
import { ProtoDecodeError, ProtoWriter, readFields, zigzagDecode } from './proto-wire.js';

describe('proto wire format', () => {
  it('encodes varints, zigzag sint32 and negative int32 like protoc', () => {
    assert.deepEqual([...new ProtoWriter().uint32(1, 150).finish()], [0x08, 0x96, 0x01]);
    assert.deepEqual([...new ProtoWriter().uint32(1, 0xffffffff).finish()], [0x08, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert.deepEqual([...new ProtoWriter().sint32(1, -1).finish()], [0x08, 0x01]);
    assert.deepEqual([...new ProtoWriter().sint32(1, 1).finish()], [0x08, 0x02]);
    assert.deepEqual([...new ProtoWriter().sint32(1, -2147483648).finish()], [0x08, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    // int32 -1 is ten bytes on the wire.
    assert.deepEqual([...new ProtoWriter().varint(-1).finish()], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    const [f] = readFields(new ProtoWriter().tag(3, 0).varint(-5).finish());
    assert.equal(f?.value !== undefined && typeof f.value === 'number' ? f.value | 0 : NaN, -5);
    for (const n of [0, 1, -1, 127, -128, 2147483647, -2147483648, 123456, -654321]) {
      const [g] = readFields(new ProtoWriter().sint32(1, n).finish());
      assert.equal(zigzagDecode(g?.value as number), n);
    }
  });

  it('skips unknown fields of every wire type and refuses truncated input', () => {
    const spec = Buffer.concat([
      new ProtoWriter().string(1, 'ls').finish(),
      Buffer.from([0x49, 1, 2, 3, 4, 5, 6, 7, 8]), // field 9, fixed64
      Buffer.from([0x55, 1, 2, 3, 4]), // field 10, fixed32
      new ProtoWriter().uint32(11, 7).string(12, 'x').finish(),
    ]);
    assert.deepEqual(decodeCommandSpec(spec), { cmd: 'ls', args: [], envs: {} });
    assert.throws(() => readFields(Buffer.from([0x0a, 0x05, 0x61])), ProtoDecodeError);
    assert.throws(() => readFields(Buffer.from([0x08, 0x80])), ProtoDecodeError);
    assert.throws(() => readFields(Buffer.from([0x0b])), ProtoDecodeError); // group
  });
});

describe('command_session messages', () => {
  it('round-trips StartRequest with args, a map, cwd, PTY, tag and stdin', () => {
    const req = {
      command: { cmd: '/bin/bash', args: ['-c', 'echo ü', ''], envs: { A: '1', EMPTY: '', 'B.C': 'x=y' }, cwd: '/tmp' },
      pty: { size: { cols: 132, rows: 50 } },
      tag: 'job-1',
      stdin: false,
    };
    assert.deepEqual(decodeStartRequest(encodeStartRequest(req)), req);
    assert.deepEqual(decodeStartRequest(encodeStartRequest({ command: { cmd: 'ls', args: [], envs: {} } })), { command: { cmd: 'ls', args: [], envs: {} } });
    // Optional fields keep their presence even when empty.
    assert.deepEqual(decodeStartRequest(encodeStartRequest({ tag: '', stdin: false, pty: {} })), { tag: '', stdin: false, pty: {} });
  });

  it('reads a map entry without key or value, and keeps the last of a repeated key', () => {
    const entry = (k: string, v: string): Buffer => new ProtoWriter().string(1, k).string(2, v).finish();
    const buf = new ProtoWriter().string(1, 'x').bytes(3, entry('K', 'a')).bytes(3, entry('K', 'b')).bytes(3, Buffer.alloc(0)).finish();
    assert.deepEqual(decodeCommandSpec(buf).envs, { K: 'b', '': '' });
    assert.deepEqual(decodeCommandSpec(encodeCommandSpec({ cmd: 'x', args: [], envs: { Z: '1', A: '2' } })).envs, { A: '2', Z: '1' });
  });

  it('round-trips every event kind, negative exit codes included', () => {
    const events: CommandSessionEvent[] = [
      { kind: 'start', pid: 42 },
      { kind: 'start', pid: 0 },
      { kind: 'data', stream: 'stdout', data: Buffer.from('hi\n') },
      { kind: 'data', stream: 'stderr', data: Buffer.from([0, 255, 10]) },
      { kind: 'data', stream: 'pty', data: Buffer.alloc(0) },
      { kind: 'end', exitCode: 3, exited: true, status: 'exited' },
      { kind: 'end', exitCode: -1, exited: false, status: 'signal: killed', error: 'boom' },
      { kind: 'end', exitCode: -2147483648, exited: true, status: '' },
      { kind: 'end', exitCode: 0, exited: true, status: 'exited' },
      { kind: 'keepalive' },
    ];
    for (const event of events) {
      assert.deepEqual(decodeEvent(encodeEvent(event)), event);
      assert.deepEqual(decodeStartResponse(encodeStartResponse({ event })), { event });
    }
    assert.deepEqual(decodeStartResponse(encodeStartResponse({})), {});
    // EndEvent{exit_code: -1} is zigzag: field 1 varint 1.
    assert.deepEqual([...encodeEvent({ kind: 'end', exitCode: -1, exited: false, status: '' })], [0x1a, 0x02, 0x08, 0x01]);
    // KeepAlive is present on the wire as an empty message.
    assert.deepEqual([...encodeEvent({ kind: 'keepalive' })], [0x22, 0x00]);
  });

  it('round-trips SendInput, SendSignal, Update, Connect and List', () => {
    const input = { session: { kind: 'pid' as const, pid: 7 }, input: { kind: 'stdin' as const, data: Buffer.from('abc') } };
    assert.deepEqual(decodeSendInputRequest(encodeSendInputRequest(input)), input);
    const ptyInput = { session: { kind: 'tag' as const, tag: 't' }, input: { kind: 'pty' as const, data: Buffer.from('\r') } };
    assert.deepEqual(decodeSendInputRequest(encodeSendInputRequest(ptyInput)), ptyInput);
    assert.deepEqual(decodeSendInputRequest(Buffer.alloc(0)), {});
    const signal = { session: { kind: 'pid' as const, pid: 1 }, signal: 9 };
    assert.deepEqual(decodeSendSignalRequest(encodeSendSignalRequest(signal)), signal);
    assert.deepEqual(decodeSendSignalRequest(encodeSendSignalRequest({ signal: 15 })), { signal: 15 });
    const update = { session: { kind: 'tag' as const, tag: 'x' }, pty: { size: { cols: 10, rows: 5 } } };
    assert.deepEqual(decodeUpdateRequest(encodeUpdateRequest(update)), update);
    assert.deepEqual(decodeConnectRequest(encodeConnectRequest({ session: { kind: 'pid', pid: 3 } })), { session: { kind: 'pid', pid: 3 } });
    const list: ListResponse = {
      sessions: [
        { command: { cmd: 'sleep', args: ['9'], envs: { A: 'b' } }, pid: 1, tag: 'a' },
        { command: { cmd: 'cat', args: [], envs: {}, cwd: '/' }, pid: 2 },
      ],
    };
    assert.deepEqual(decodeListResponse(encodeListResponse(list)), list);
    assert.deepEqual(decodeListResponse(Buffer.alloc(0)), { sessions: [] });
  });
});

describe('Connect envelopes', () => {
  it('frames messages and end-stream JSON', () => {
    const framed = Buffer.concat([envelope(Buffer.from([1, 2, 3])), endStreamEnvelope(new ConnectError('not_found', 'gone'))]);
    const [a, b] = decodeEnvelopes(framed);
    assert.deepEqual(a, { flags: 0, message: Buffer.from([1, 2, 3]) });
    assert.equal(b?.flags, FLAG_END_STREAM);
    assert.deepEqual(JSON.parse(b?.message.toString('utf8') ?? ''), { error: { code: 'not_found', message: 'gone' } });
    assert.deepEqual(JSON.parse(decodeEnvelopes(endStreamEnvelope())[0]?.message.toString('utf8') ?? ''), {});
    assert.throws(() => decodeEnvelopes(Buffer.from([0, 0, 0, 0, 9, 1])), ConnectError);
  });

  it('reads the one message of a streaming request, gzip included', () => {
    assert.deepEqual(singleStreamMessage(envelope(Buffer.from('m')), undefined), Buffer.from('m'));
    assert.deepEqual(singleStreamMessage(envelope(gzipSync(Buffer.from('zip')), FLAG_COMPRESSED), 'gzip'), Buffer.from('zip'));
    assert.throws(() => singleStreamMessage(Buffer.concat([envelope(Buffer.from('a')), envelope(Buffer.from('b'))]), undefined), /exactly one/);
    assert.throws(() => singleStreamMessage(Buffer.alloc(0), undefined), /exactly one/);
    assert.throws(() => singleStreamMessage(envelope(Buffer.from('x'), FLAG_COMPRESSED), 'br'), /Unsupported compression/);
  });

  it('parses Connect-Timeout-Ms', () => {
    assert.equal(parseTimeoutMs(undefined), undefined);
    assert.equal(parseTimeoutMs('300000'), 300000);
    assert.throws(() => parseTimeoutMs('-1'), ConnectError);
    assert.throws(() => parseTimeoutMs('12345678901'), ConnectError);
  });
});

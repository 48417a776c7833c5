import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { type MessageInitShape, create, fromBinary } from '@bufbuild/protobuf';
import { ConnectError, FLAG_COMPRESSED, FLAG_END_STREAM, decodeEnvelopes, decodeMessage, endStreamEnvelope, envelope, parseTimeoutMs, singleStreamMessage } from './connect-protocol.js';
import { encode } from './connect-test-client.js';
import {
  CommandSpecSchema,
  ListResponseSchema,
  SendInputRequestSchema,
  SendSignalRequestSchema,
  Signal,
  StartRequestSchema,
  UpdateRequestSchema,
} from './gen/command_session_pb.js';
import { type SessionEvent, decodeSessionEvent, encodeSessionEvent } from './session-events.js';

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

// Known encodings: the bytes the hand-written codec this replaced put on the wire.
describe('command_session messages on the wire', () => {
  it('encodes StartRequest with args, a map, cwd, PTY, tag and stdin as before', () => {
    const init = {
      command: { cmd: '/bin/bash', args: ['-c', 'echo ü', ''], envs: { A: '1', 'B.C': 'x=y' }, cwd: '/tmp' },
      pty: { size: { cols: 132, rows: 50 } },
      tag: 'job-1',
      stdin: false,
    };
    const bytes = encode(StartRequestSchema, init);
    assert.equal(
      hex(bytes),
      '0a340a092f62696e2f6261736812022d6312076563686f20c3bc12001a060a01411201311a0a0a03422e431203783d7922042f746d7012070a0508840110321a056a6f622d312000',
    );
    const decoded = decodeMessage(StartRequestSchema, bytes);
    assert.deepEqual(decoded, create(StartRequestSchema, init));
    // Optional fields keep their presence even when empty; absent ones stay absent.
    const empty = decodeMessage(StartRequestSchema, encode(StartRequestSchema, { tag: '', stdin: false, pty: {} }));
    assert.equal(empty.tag, '');
    assert.equal(empty.stdin, false);
    assert.ok(empty.pty);
    assert.equal(empty.command, undefined);
    const none = decodeMessage(StartRequestSchema, new Uint8Array(0));
    assert.equal(none.tag, undefined);
    assert.equal(none.stdin, undefined);
    assert.equal(none.pty, undefined);
  });

  it('encodes every event kind as before, negative exit codes included (sint32 zigzag)', () => {
    const known: Array<[SessionEvent, string]> = [
      [{ kind: 'start', pid: 42 }, '0a040a02082a'],
      [{ kind: 'start', pid: 0 }, '0a020a00'],
      [{ kind: 'data', stream: 'stdout', data: Buffer.from('hi\n') }, '0a0712050a0368690a'],
      [{ kind: 'data', stream: 'stderr', data: Buffer.from([0, 255, 10]) }, '0a071205120300ff0a'],
      [{ kind: 'data', stream: 'pty', data: Buffer.alloc(0) }, '0a0412021a00'],
      [{ kind: 'end', exitCode: 3, exited: true, status: 'exited' }, '0a0e1a0c080610011a06657869746564'],
      [{ kind: 'end', exitCode: -1, exited: false, status: 'signal: killed', error: 'boom' }, '0a1a1a1808011a0e7369676e616c3a206b696c6c65642204626f6f6d'],
      [{ kind: 'end', exitCode: -2147483648, exited: true, status: '' }, '0a0a1a0808ffffffff0f1001'],
      [{ kind: 'end', exitCode: 0, exited: true, status: 'exited' }, '0a0c1a0a10011a06657869746564'],
      // KeepAlive is present on the wire as an empty message.
      [{ kind: 'keepalive' }, '0a022200'],
    ];
    for (const [event, bytes] of known) {
      assert.equal(hex(encodeSessionEvent(event)), bytes, JSON.stringify(event));
      assert.deepEqual(decodeSessionEvent(encodeSessionEvent(event)), event);
    }
    assert.equal(decodeSessionEvent(new Uint8Array(0)), undefined);
  });

  it('encodes SendInput, SendSignal, Update and List as before', () => {
    assert.equal(hex(encode(SendSignalRequestSchema, { session: { selector: { case: 'pid', value: 1 } }, signal: Signal.SIGKILL })), '0a0208011009');
    assert.equal(
      hex(encode(SendInputRequestSchema, { session: { selector: { case: 'tag', value: 't' } }, input: { input: { case: 'pty', value: Buffer.from('\r') } } })),
      '0a03120174120312010d',
    );
    assert.equal(hex(encode(UpdateRequestSchema, { session: { selector: { case: 'pid', value: 3 } }, pty: { size: { cols: 10, rows: 5 } } })), '0a02080312060a04080a1005');
    const list: MessageInitShape<typeof ListResponseSchema> = {
      sessions: [
        { command: { cmd: 'sleep', args: ['9'], envs: { A: 'b' } }, pid: 1, tag: 'a' },
        { command: { cmd: 'cat', args: [], envs: {}, cwd: '/' }, pid: 2 },
      ],
    };
    assert.equal(hex(encode(ListResponseSchema, list)), '0a190a120a05736c6565701201391a060a014112016210011a01610a0c0a080a0363617422012f1002');
    // A signal outside the enum is kept (proto3 enums are open), for the route to refuse by number.
    assert.equal(decodeMessage(SendSignalRequestSchema, encode(SendSignalRequestSchema, { signal: 2 as Signal })).signal, 2);
  });

  it('reads a map entry without key or value, and keeps the last of a repeated key', () => {
    // CommandSpec{cmd: "x", envs: [K=a, K=b, (empty entry)]}
    const bytes = Buffer.from('0a01781a060a014b1201611a060a014b1201621a00', 'hex');
    assert.deepEqual(fromBinary(CommandSpecSchema, bytes).envs, { K: 'b', '': '' });
  });

  it('skips unknown fields of every wire type and refuses malformed input as invalid_argument', () => {
    // cmd "ls", then unknown fields 9 (fixed64), 10 (fixed32), 11 (varint), 12 (bytes).
    const spec = Buffer.from('0a026c73' + '490102030405060708' + '5501020304' + '5807' + '620178', 'hex');
    const decoded = decodeMessage(CommandSpecSchema, spec);
    assert.equal(decoded.cmd, 'ls');
    assert.deepEqual(decoded.args, []);
    assert.deepEqual(decoded.envs, {});
    const refused = (bytes: number[]): void => {
      assert.throws(
        () => decodeMessage(CommandSpecSchema, Buffer.from(bytes)),
        (error: unknown) => error instanceof ConnectError && error.code === 'invalid_argument' && /^Malformed protobuf message/.test(error.message),
      );
    };
    refused([0x0a, 0x05, 0x61]); // truncated string
    refused([0x08, 0x80]); // truncated varint
    refused([0x0b]); // a group where a string is
    refused([0x0a, 0x02, 0xff, 0xfe]); // invalid UTF-8 in a string
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

  it('reads the one message of a streaming request, gzip included', async () => {
    assert.deepEqual(await singleStreamMessage(envelope(Buffer.from('m')), undefined), Buffer.from('m'));
    assert.deepEqual(await singleStreamMessage(envelope(gzipSync(Buffer.from('zip')), FLAG_COMPRESSED), 'gzip'), Buffer.from('zip'));
    await assert.rejects(singleStreamMessage(Buffer.concat([envelope(Buffer.from('a')), envelope(Buffer.from('b'))]), undefined), /exactly one/);
    await assert.rejects(singleStreamMessage(Buffer.alloc(0), undefined), /exactly one/);
    await assert.rejects(singleStreamMessage(envelope(Buffer.from('x'), FLAG_COMPRESSED), 'br'), /Unsupported compression/);
  });

  it('parses Connect-Timeout-Ms', () => {
    assert.equal(parseTimeoutMs(undefined), undefined);
    assert.equal(parseTimeoutMs('300000'), 300000);
    assert.throws(() => parseTimeoutMs('-1'), ConnectError);
    assert.throws(() => parseTimeoutMs('12345678901'), ConnectError);
  });

  it('gives each Connect error the HTTP status of its code', () => {
    assert.equal(new ConnectError('invalid_argument', 'x').status, 400);
    assert.equal(new ConnectError('unauthenticated', 'x').status, 401);
    assert.equal(new ConnectError('unimplemented', 'x').status, 501);
  });
});

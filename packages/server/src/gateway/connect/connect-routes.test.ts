import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create, fromBinary } from '@bufbuild/protobuf';
import {
  CommandSessionInfoSchema,
  ConnectRequestSchema,
  ListResponseSchema,
  SendInputRequestSchema,
  SendSignalRequestSchema,
  Signal,
  StartRequestSchema,
  UpdateRequestSchema,
} from './gen/command_session_pb.js';
import { toConnectError } from './connect-routes.js';
import { ConnectError } from './connect-protocol.js';
import { type ConnectTarget, StreamCall, encode, unaryCall } from './connect-test-client.js';
import { GatewayError, sandboxNotFound, unauthorized } from '../../errors/gateway-error.js';
import { RuntimeError } from '../../runtime/runtime.js';
import type { GatewayTarget } from '../gateway-target.js';
import { type GatewaySandbox, type GatewayTestServer, createSandbox, dockerMissing, execCall, startGatewayServer, waitForStatus } from '../test-support.js';

const missing = dockerMissing();

/** The fields of a `StartRequest` the tests set, as plain values. */
interface StartInit {
  command?: { cmd: string; args?: string[]; envs?: Record<string, string>; cwd?: string };
  pty?: { size?: { cols: number; rows: number } };
  stdin?: boolean;
  tag?: string;
}

function start(target: ConnectTarget, req: StartInit, timeoutMs?: number): StreamCall {
  return new StreamCall(target, 'Start', encode(StartRequestSchema, req), timeoutMs);
}

function sh(script: string, extra: StartInit = {}): StartInit {
  return { command: { cmd: '/bin/sh', args: ['-c', script], envs: {} }, ...extra };
}

function pidOf(call: StreamCall): number {
  const first = call.events[0];
  assert.equal(first?.kind, 'start');
  return first.kind === 'start' ? first.pid : -1;
}

/** Polls until `ps` shows no process whose args start with `pattern`. */
async function waitGone(sb: GatewaySandbox, pattern: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await execCall(sb, { command: `ps -o args | grep -c '^${pattern}' || true` });
    if (r.body.stdout.trim() === '0') return;
    if (Date.now() > deadline) throw new Error(`${pattern} still running`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('Connect error mapping', () => {
  it('maps gateway and runtime failures to Connect codes', () => {
    assert.equal(toConnectError(unauthorized('no')).code, 'unauthenticated');
    assert.equal(toConnectError(new GatewayError('sandbox_not_ready', 'PENDING')).code, 'unavailable');
    assert.equal(toConnectError(sandboxNotFound('x', 'gone')).code, 'not_found');
    assert.equal(toConnectError(new GatewayError('gateway_error', 'down')).code, 'unavailable');
    assert.equal(toConnectError(new ConnectError('aborted', 'a')).code, 'aborted');
    assert.equal(toConnectError(new Error('secret detail')).code, 'internal');
    assert.doesNotMatch(toConnectError(new Error('secret detail')).message, /secret/);
    const target = { sandboxId: 'sb', userId: 'u', runtimeId: 'r', runtime: null } as unknown as GatewayTarget;
    assert.equal(toConnectError(new RuntimeError('NOT_FOUND', 'no container'), target).code, 'not_found');
    assert.equal(toConnectError(new RuntimeError('RUNTIME_ERROR', 'docker down'), target).code, 'unavailable');
  });
});

describe('gateway Connect-RPC command_session (Docker)', { concurrency: true, timeout: 60_000, skip: missing !== undefined && process.env.CI !== 'true' ? missing : undefined }, () => {
  let server: GatewayTestServer;
  let sb: GatewaySandbox;
  let target: ConnectTarget;

  before(async () => {
    if (missing !== undefined) throw new Error(missing);
    server = await startGatewayServer();
    sb = await createSandbox(server);
    target = { base: sb.base, token: sb.token };
  });
  after(async () => server?.close());

  it('runs a command like execute_command: start, stdout, stderr, end with the exit code', async () => {
    const call = start(target, sh('echo hi; sleep 0.2; echo err >&2; exit 3'));
    const result = await call.result;
    assert.equal(result.status, 200);
    assert.equal(result.ended, true);
    assert.equal(result.error, undefined);
    assert.deepEqual(
      result.events.map((e) => (e.kind === 'data' ? { kind: e.kind, stream: e.stream, text: e.data.toString() } : e)),
      [
        { kind: 'start', pid: pidOf(call) },
        { kind: 'data', stream: 'stdout', text: 'hi\n' },
        { kind: 'data', stream: 'stderr', text: 'err\n' },
        { kind: 'end', exitCode: 3, exited: true, status: 'exited' },
      ],
    );
    assert.ok(pidOf(call) > 0);
  });

  it('runs argv without a shell, with envs and cwd', async () => {
    const call = start(target, { command: { cmd: 'env', args: [], envs: { CORRAL_X: 'a b', PATH: '/bin:/usr/bin' }, cwd: '/tmp' } });
    await call.result;
    assert.match(call.text('stdout'), /^CORRAL_X=a b$/m);
    const pwd = start(target, { command: { cmd: 'pwd', args: [], envs: {}, cwd: '/tmp' } });
    await pwd.result;
    assert.equal(pwd.text('stdout'), '/tmp\n');
    // A 10-digit deadline (beyond what a timer can hold) is no deadline, not an immediate one.
    const literal = start(target, { command: { cmd: 'echo', args: ['$HOME', 'two words'], envs: {} } }, 9_999_999_999);
    await literal.result;
    assert.equal(literal.text('stdout'), '$HOME two words\n');
  });

  it('gives stdin EOF unless asked, and writes SendInput to stdin of a process started with stdin', async () => {
    const eof = start(target, { command: { cmd: 'cat', args: [], envs: {} } });
    const done = await eof.result;
    assert.deepEqual(done.events.at(-1), { kind: 'end', exitCode: 0, exited: true, status: 'exited' });

    const call = start(target, { command: { cmd: 'cat', args: [], envs: {} }, stdin: true, tag: 'cat-1' });
    await call.until((c) => c.events.length > 0, 'start');
    const pid = pidOf(call);
    const r1 = await unaryCall(target, 'SendInput', encode(SendInputRequestSchema, { session: { selector: { case: 'pid', value: pid } }, input: { input: { case: 'stdin', value: Buffer.from('hello ') } } }));
    assert.equal(r1.status, 200);
    assert.equal(r1.message?.length, 0);
    const r2 = await unaryCall(target, 'SendInput', encode(SendInputRequestSchema, { session: { selector: { case: 'tag', value: 'cat-1' } }, input: { input: { case: 'stdin', value: Buffer.from('world') } } }));
    assert.equal(r2.status, 200);
    await call.until((c) => c.text('stdout') === 'hello world', 'echoed input');

    const listed = await unaryCall(target, 'List', Buffer.alloc(0));
    const sessions = fromBinary(ListResponseSchema, listed.message ?? Buffer.alloc(0)).sessions;
    assert.deepEqual(
      sessions.find((s) => s.pid === pid),
      create(CommandSessionInfoSchema, { pid, tag: 'cat-1', command: { cmd: 'cat', args: [], envs: {} } }),
    );

    const kill = await unaryCall(target, 'SendSignal', encode(SendSignalRequestSchema, { session: { selector: { case: 'pid', value: pid } }, signal: Signal.SIGKILL }));
    assert.equal(kill.status, 200);
    const result = await call.result;
    const end = result.events.at(-1);
    assert.equal(end?.kind, 'end');
    assert.equal(end?.kind === 'end' ? end.exitCode : 0, 137);

    const gone = await unaryCall(target, 'SendInput', encode(SendInputRequestSchema, { session: { selector: { case: 'pid', value: pid } }, input: { input: { case: 'stdin', value: Buffer.from('x') } } }));
    assert.equal(gone.status, 404);
    assert.equal(gone.error?.code, 'not_found');
  });

  it('refuses input to a process without stdin, unknown signals and wrong codecs', async () => {
    const call = start(target, sh('echo ready; sleep 1001'));
    await call.until((c) => c.text('stdout') === 'ready\n', 'ready');
    const pid = pidOf(call);
    const input = await unaryCall(target, 'SendInput', encode(SendInputRequestSchema, { session: { selector: { case: 'pid', value: pid } }, input: { input: { case: 'stdin', value: Buffer.from('x') } } }));
    assert.equal(input.error?.code, 'failed_precondition');
    const bad = await unaryCall(target, 'SendSignal', encode(SendSignalRequestSchema, { session: { selector: { case: 'pid', value: pid } }, signal: 2 as Signal }));
    assert.equal(bad.status, 400);
    assert.equal(bad.error?.code, 'invalid_argument');
    const json = await unaryCall(target, 'List', Buffer.from('{}'), 'application/json');
    assert.equal(json.error?.code, 'unimplemented');
    const streamIn = await new StreamCall(target, 'StreamInput', Buffer.alloc(0)).result;
    assert.equal(streamIn.status, 200); // a streaming method: the error is in the end-stream message
    assert.equal(streamIn.error?.code, 'unimplemented');
    const unknown = await unaryCall(target, 'Nope', Buffer.alloc(0));
    assert.equal(unknown.error?.code, 'unimplemented');
    const term = await unaryCall(target, 'SendSignal', encode(SendSignalRequestSchema, { session: { selector: { case: 'pid', value: pid } }, signal: Signal.SIGTERM }));
    assert.equal(term.status, 200);
    const end = (await call.result).events.at(-1);
    assert.equal(end?.kind === 'end' ? end.exitCode : 0, 143);
    const malformed = start(target, { command: { cmd: '', args: [], envs: {} } });
    assert.equal((await malformed.result).error?.code, 'invalid_argument');
  });

  it('allocates a PTY of the asked size, resizes it with Update and takes pty input', async () => {
    const call = start(target, { ...sh('stty size; read line; stty size; echo got:$line'), pty: { size: { cols: 80, rows: 24 } } });
    await call.until((c) => c.text('pty').includes('24 80'), 'stty size');
    const pid = pidOf(call);
    const upd = await unaryCall(target, 'Update', encode(UpdateRequestSchema, { session: { selector: { case: 'pid', value: pid } }, pty: { size: { cols: 132, rows: 50 } } }));
    assert.equal(upd.status, 200);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const input = await unaryCall(target, 'SendInput', encode(SendInputRequestSchema, { session: { selector: { case: 'pid', value: pid } }, input: { input: { case: 'pty', value: Buffer.from('go\r') } } }));
    assert.equal(input.status, 200);
    const result = await call.result;
    assert.match(call.text('pty'), /50 132/);
    assert.match(call.text('pty'), /got:go/);
    assert.equal(call.text('stdout') + call.text('stderr'), '');
    assert.deepEqual(result.events.at(-1), { kind: 'end', exitCode: 0, exited: true, status: 'exited' });
  });

  it('re-attaches with Connect and streams new output and the end to both', async () => {
    const call = start(target, { ...sh('read a; echo after:$a; exit 4'), stdin: true, tag: 'reattach' });
    await call.until((c) => c.events.length > 0, 'start');
    const pid = pidOf(call);
    const second = new StreamCall(target, 'Connect', encode(ConnectRequestSchema, { session: { selector: { case: 'tag', value: 'reattach' } } }));
    await second.until((c) => c.events.length > 0, 'connect start');
    assert.deepEqual(second.events[0], { kind: 'start', pid });
    await unaryCall(target, 'SendInput', encode(SendInputRequestSchema, { session: { selector: { case: 'pid', value: pid } }, input: { input: { case: 'stdin', value: Buffer.from('x\n') } } }));
    for (const c of [call, second]) {
      const result = await c.result;
      assert.equal(c.text('stdout'), 'after:x\n');
      assert.deepEqual(result.events.at(-1), { kind: 'end', exitCode: 4, exited: true, status: 'exited' });
    }
    const none = await new StreamCall(target, 'Connect', encode(ConnectRequestSchema, { session: { selector: { case: 'pid', value: 99999 } } })).result;
    assert.equal(none.error?.code, 'not_found');
  });

  it('ends with deadline_exceeded at Connect-Timeout-Ms and kills the process tree', async () => {
    const t0 = Date.now();
    const call = start(target, sh('sleep 1002 & sleep 1003'), 1000);
    const result = await call.result;
    assert.equal(result.error?.code, 'deadline_exceeded');
    assert.ok(Date.now() - t0 < 8000);
    assert.equal(result.events.some((e) => e.kind === 'end'), false);
    await waitGone(sb, 'sleep 100[23]');
  });

  it('counts Connect-Timeout-Ms from the request: a Start still waiting for a process slot ends at its deadline, and never runs', async () => {
    const small = await startGatewayServer({ maxSessionsPerSandbox: 1 });
    try {
      const box = await createSandbox(small);
      const boxTarget = { base: box.base, token: box.token };
      const holder = start(boxTarget, sh('echo held; sleep 1006'));
      await holder.until((c) => c.text('stdout') === 'held\n', 'held');
      const waiting = await start(boxTarget, sh('touch /tmp/ran'), 1000).result;
      assert.equal(waiting.error?.code, 'deadline_exceeded');
      assert.match(waiting.error?.message ?? '', /waiting for a process slot/);
      assert.deepEqual(waiting.events, []);
      holder.abort();
      await waitGone(box, 'sleep 1006');
      const ran = await execCall(box, { command: 'test -e /tmp/ran && echo ran || echo not-run' });
      assert.equal(ran.body.stdout.trim(), 'not-run');
    } finally {
      await small.close();
    }
  });

  it('kills the process tree when the client disconnects', async () => {
    const call = start(target, sh('sleep 1004 & echo ready; sleep 1005'));
    await call.until((c) => c.text('stdout') === 'ready\n', 'ready');
    call.abort();
    await waitGone(sb, 'sleep 100[45]');
  });

  it('answers unauthenticated without a valid token, on streams and unary calls', async () => {
    for (const token of [null, 'nope']) {
      const streamed = await start({ base: sb.base, token }, sh('echo no')).result;
      assert.equal(streamed.status, 200);
      assert.equal(streamed.error?.code, 'unauthenticated');
      assert.deepEqual(streamed.events, []);
      const unary = await unaryCall({ base: sb.base, token }, 'List', Buffer.alloc(0));
      assert.equal(unary.status, 401);
      assert.equal(unary.error?.code, 'unauthenticated');
    }
  });

  it('answers not_found once the sandbox is deleted', async () => {
    const other = await createSandbox(server);
    const otherTarget = { base: other.base, token: other.token };
    const ok = await start(otherTarget, sh('echo up')).result;
    assert.equal(ok.error, undefined);
    const del = await server.t.request('DELETE', `/api/v1/sandbox/${other.id}`);
    assert.ok(del.statusCode < 300, `delete: ${del.statusCode}`);
    await waitForStatus(server, other.id, 'TERMINATED').catch(() => undefined);
    const streamed = await start(otherTarget, sh('echo no')).result;
    assert.equal(streamed.error?.code, 'not_found');
    const unary = await unaryCall(otherTarget, 'List', Buffer.alloc(0));
    assert.equal(unary.status, 404);
    assert.equal(unary.error?.code, 'not_found');
  });
});

/**
 * The `command_session` protobuf messages (docs/connect-rpc.md) as plain TypeScript values,
 * with hand-written binary encoders and decoders. Unknown fields are ignored; proto3 defaults
 * are omitted when encoding, except for `optional` fields and oneof members, which keep their
 * presence.
 */
import { ProtoDecodeError, ProtoWriter, WIRE_LEN, WIRE_VARINT, type ProtoField, readFields, toInt32, zigzagDecode } from './proto-wire.js';

/** `command_session.Signal` values. */
export const SIGNAL_UNSPECIFIED = 0;
/** See `SIGNAL_UNSPECIFIED`. */
export const SIGNAL_SIGKILL = 9;
/** See `SIGNAL_UNSPECIFIED`. */
export const SIGNAL_SIGTERM = 15;

/** `PTY.Size`. */
export interface PtySize {
  cols: number;
  rows: number;
}

/** `PTY`. */
export interface Pty {
  size?: PtySize;
}

/** `CommandSpec`: argv is `[cmd, ...args]`. */
export interface CommandSpec {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

/** `StartRequest`. */
export interface StartRequest {
  command?: CommandSpec;
  pty?: Pty;
  tag?: string;
  stdin?: boolean;
}

/** `CommandSessionEvent.EndEvent`. */
export interface EndEvent {
  exitCode: number;
  exited: boolean;
  status: string;
  error?: string;
}

/** `CommandSessionEvent`: exactly one of start, data, end, keepalive. */
export type CommandSessionEvent =
  | { kind: 'start'; pid: number }
  | { kind: 'data'; stream: 'stdout' | 'stderr' | 'pty'; data: Buffer }
  | ({ kind: 'end' } & EndEvent)
  | { kind: 'keepalive' };

/** `StartResponse` and `ConnectResponse` (same shape). */
export interface StartResponse {
  event?: CommandSessionEvent;
}

/** `CommandSessionSelector`. */
export type CommandSessionSelector = { kind: 'pid'; pid: number } | { kind: 'tag'; tag: string };

/** `CommandInput`. */
export interface CommandInput {
  kind: 'stdin' | 'pty';
  data: Buffer;
}

/** `SendInputRequest`. */
export interface SendInputRequest {
  session?: CommandSessionSelector;
  input?: CommandInput;
}

/** `SendSignalRequest`; `signal` is a `Signal` value. */
export interface SendSignalRequest {
  session?: CommandSessionSelector;
  signal: number;
}

/** `CommandSessionInfo`. */
export interface CommandSessionInfo {
  command?: CommandSpec;
  pid: number;
  tag?: string;
}

/** `ListResponse`. */
export interface ListResponse {
  sessions: CommandSessionInfo[];
}

/** `UpdateRequest`. */
export interface UpdateRequest {
  session?: CommandSessionSelector;
  pty?: Pty;
}

/** `ConnectRequest`. */
export interface ConnectRequest {
  session?: CommandSessionSelector;
}

type Bytes = Buffer;

function lenValue(f: ProtoField, name: string): Bytes {
  if (f.wireType !== WIRE_LEN) throw new ProtoDecodeError(`${name}: expected a length-delimited field`);
  return f.value;
}

function varintValue(f: ProtoField, name: string): number {
  if (f.wireType !== WIRE_VARINT) throw new ProtoDecodeError(`${name}: expected a varint field`);
  return f.value;
}

function utf8(f: ProtoField, name: string): string {
  return lenValue(f, name).toString('utf8');
}

// --- PTY ---------------------------------------------------------------------------------

/** Encodes a `PTY`. */
export function encodePty(pty: Pty): Buffer {
  const w = new ProtoWriter();
  if (pty.size) {
    const s = new ProtoWriter();
    if (pty.size.cols) s.uint32(1, pty.size.cols);
    if (pty.size.rows) s.uint32(2, pty.size.rows);
    w.bytes(1, s.finish());
  }
  return w.finish();
}

/** Decodes a `PTY`. */
export function decodePty(buf: Buffer): Pty {
  const pty: Pty = {};
  for (const f of readFields(buf)) {
    if (f.field !== 1) continue;
    const size: PtySize = { cols: 0, rows: 0 };
    for (const g of readFields(lenValue(f, 'PTY.size'))) {
      if (g.field === 1) size.cols = varintValue(g, 'PTY.Size.cols');
      else if (g.field === 2) size.rows = varintValue(g, 'PTY.Size.rows');
    }
    pty.size = size;
  }
  return pty;
}

// --- CommandSpec -------------------------------------------------------------------------

/** Encodes a `CommandSpec`; `envs` entries are written in key order. */
export function encodeCommandSpec(spec: CommandSpec): Buffer {
  const w = new ProtoWriter();
  if (spec.cmd) w.string(1, spec.cmd);
  for (const arg of spec.args) w.string(2, arg);
  for (const key of Object.keys(spec.envs).sort()) {
    const entry = new ProtoWriter();
    if (key) entry.string(1, key);
    const value = spec.envs[key] as string;
    if (value) entry.string(2, value);
    w.bytes(3, entry.finish());
  }
  if (spec.cwd !== undefined) w.string(4, spec.cwd);
  return w.finish();
}

/** Decodes a `CommandSpec`. A map key given twice keeps its last value. */
export function decodeCommandSpec(buf: Buffer): CommandSpec {
  const spec: CommandSpec = { cmd: '', args: [], envs: {} };
  for (const f of readFields(buf)) {
    switch (f.field) {
      case 1:
        spec.cmd = utf8(f, 'CommandSpec.cmd');
        break;
      case 2:
        spec.args.push(utf8(f, 'CommandSpec.args'));
        break;
      case 3: {
        let key = '';
        let value = '';
        for (const g of readFields(lenValue(f, 'CommandSpec.envs'))) {
          if (g.field === 1) key = utf8(g, 'CommandSpec.envs.key');
          else if (g.field === 2) value = utf8(g, 'CommandSpec.envs.value');
        }
        spec.envs[key] = value;
        break;
      }
      case 4:
        spec.cwd = utf8(f, 'CommandSpec.cwd');
        break;
    }
  }
  return spec;
}

// --- StartRequest ------------------------------------------------------------------------

/** Encodes a `StartRequest`. */
export function encodeStartRequest(req: StartRequest): Buffer {
  const w = new ProtoWriter();
  if (req.command) w.bytes(1, encodeCommandSpec(req.command));
  if (req.pty) w.bytes(2, encodePty(req.pty));
  if (req.tag !== undefined) w.string(3, req.tag);
  if (req.stdin !== undefined) w.bool(4, req.stdin);
  return w.finish();
}

/** Decodes a `StartRequest`. */
export function decodeStartRequest(buf: Buffer): StartRequest {
  const req: StartRequest = {};
  for (const f of readFields(buf)) {
    switch (f.field) {
      case 1:
        req.command = decodeCommandSpec(lenValue(f, 'StartRequest.command'));
        break;
      case 2:
        req.pty = decodePty(lenValue(f, 'StartRequest.pty'));
        break;
      case 3:
        req.tag = utf8(f, 'StartRequest.tag');
        break;
      case 4:
        req.stdin = varintValue(f, 'StartRequest.stdin') !== 0;
        break;
    }
  }
  return req;
}

// --- CommandSessionEvent -----------------------------------------------------------------

/** Encodes a `CommandSessionEvent`. */
export function encodeEvent(event: CommandSessionEvent): Buffer {
  const w = new ProtoWriter();
  switch (event.kind) {
    case 'start': {
      const s = new ProtoWriter();
      if (event.pid) s.uint32(1, event.pid);
      w.bytes(1, s.finish());
      break;
    }
    case 'data': {
      const d = new ProtoWriter();
      d.bytes(event.stream === 'stdout' ? 1 : event.stream === 'stderr' ? 2 : 3, event.data);
      w.bytes(2, d.finish());
      break;
    }
    case 'end': {
      const e = new ProtoWriter();
      if (event.exitCode) e.sint32(1, event.exitCode);
      if (event.exited) e.bool(2, true);
      if (event.status) e.string(3, event.status);
      if (event.error !== undefined) e.string(4, event.error);
      w.bytes(3, e.finish());
      break;
    }
    case 'keepalive':
      w.bytes(4, Buffer.alloc(0));
      break;
  }
  return w.finish();
}

/** Decodes a `CommandSessionEvent`; undefined when no oneof member is set. */
export function decodeEvent(buf: Buffer): CommandSessionEvent | undefined {
  let event: CommandSessionEvent | undefined;
  for (const f of readFields(buf)) {
    switch (f.field) {
      case 1: {
        let pid = 0;
        for (const g of readFields(lenValue(f, 'StartEvent'))) if (g.field === 1) pid = varintValue(g, 'StartEvent.pid');
        event = { kind: 'start', pid };
        break;
      }
      case 2: {
        let data: CommandSessionEvent | undefined;
        for (const g of readFields(lenValue(f, 'DataEvent'))) {
          const stream = g.field === 1 ? 'stdout' : g.field === 2 ? 'stderr' : g.field === 3 ? 'pty' : undefined;
          if (stream) data = { kind: 'data', stream, data: Buffer.from(lenValue(g, `DataEvent.${stream}`)) };
        }
        event = data ?? { kind: 'data', stream: 'stdout', data: Buffer.alloc(0) };
        break;
      }
      case 3: {
        const end: CommandSessionEvent = { kind: 'end', exitCode: 0, exited: false, status: '' };
        for (const g of readFields(lenValue(f, 'EndEvent'))) {
          if (g.field === 1) end.exitCode = zigzagDecode(varintValue(g, 'EndEvent.exit_code'));
          else if (g.field === 2) end.exited = varintValue(g, 'EndEvent.exited') !== 0;
          else if (g.field === 3) end.status = utf8(g, 'EndEvent.status');
          else if (g.field === 4) end.error = utf8(g, 'EndEvent.error');
        }
        event = end;
        break;
      }
      case 4:
        lenValue(f, 'KeepAlive');
        event = { kind: 'keepalive' };
        break;
    }
  }
  return event;
}

/** Encodes a `StartResponse` / `ConnectResponse`. */
export function encodeStartResponse(res: StartResponse): Buffer {
  const w = new ProtoWriter();
  if (res.event) w.bytes(1, encodeEvent(res.event));
  return w.finish();
}

/** Decodes a `StartResponse` / `ConnectResponse`. */
export function decodeStartResponse(buf: Buffer): StartResponse {
  const res: StartResponse = {};
  for (const f of readFields(buf)) {
    if (f.field === 1) {
      const event = decodeEvent(lenValue(f, 'StartResponse.event'));
      if (event) res.event = event;
    }
  }
  return res;
}

// --- Selector, input, signal -------------------------------------------------------------

/** Encodes a `CommandSessionSelector`. */
export function encodeSelector(sel: CommandSessionSelector): Buffer {
  const w = new ProtoWriter();
  if (sel.kind === 'pid') w.uint32(1, sel.pid);
  else w.string(2, sel.tag);
  return w.finish();
}

/** Decodes a `CommandSessionSelector`; undefined when neither pid nor tag is set. */
export function decodeSelector(buf: Buffer): CommandSessionSelector | undefined {
  let sel: CommandSessionSelector | undefined;
  for (const f of readFields(buf)) {
    if (f.field === 1) sel = { kind: 'pid', pid: varintValue(f, 'CommandSessionSelector.pid') };
    else if (f.field === 2) sel = { kind: 'tag', tag: utf8(f, 'CommandSessionSelector.tag') };
  }
  return sel;
}

function decodeSelectorField(f: ProtoField, name: string): CommandSessionSelector | undefined {
  return decodeSelector(lenValue(f, name));
}

/** Encodes a `CommandInput`. */
export function encodeCommandInput(input: CommandInput): Buffer {
  return new ProtoWriter().bytes(input.kind === 'stdin' ? 1 : 2, input.data).finish();
}

/** Decodes a `CommandInput`; undefined when neither stdin nor pty is set. */
export function decodeCommandInput(buf: Buffer): CommandInput | undefined {
  let input: CommandInput | undefined;
  for (const f of readFields(buf)) {
    if (f.field === 1) input = { kind: 'stdin', data: Buffer.from(lenValue(f, 'CommandInput.stdin')) };
    else if (f.field === 2) input = { kind: 'pty', data: Buffer.from(lenValue(f, 'CommandInput.pty')) };
  }
  return input;
}

/** Encodes a `SendInputRequest`. */
export function encodeSendInputRequest(req: SendInputRequest): Buffer {
  const w = new ProtoWriter();
  if (req.session) w.bytes(1, encodeSelector(req.session));
  if (req.input) w.bytes(2, encodeCommandInput(req.input));
  return w.finish();
}

/** Decodes a `SendInputRequest`. */
export function decodeSendInputRequest(buf: Buffer): SendInputRequest {
  const req: SendInputRequest = {};
  for (const f of readFields(buf)) {
    if (f.field === 1) {
      const sel = decodeSelectorField(f, 'SendInputRequest.session');
      if (sel) req.session = sel;
    } else if (f.field === 2) {
      const input = decodeCommandInput(lenValue(f, 'SendInputRequest.input'));
      if (input) req.input = input;
    }
  }
  return req;
}

/** Encodes a `SendSignalRequest`. */
export function encodeSendSignalRequest(req: SendSignalRequest): Buffer {
  const w = new ProtoWriter();
  if (req.session) w.bytes(1, encodeSelector(req.session));
  if (req.signal) w.uint32(2, req.signal);
  return w.finish();
}

/** Decodes a `SendSignalRequest`. */
export function decodeSendSignalRequest(buf: Buffer): SendSignalRequest {
  const req: SendSignalRequest = { signal: SIGNAL_UNSPECIFIED };
  for (const f of readFields(buf)) {
    if (f.field === 1) {
      const sel = decodeSelectorField(f, 'SendSignalRequest.session');
      if (sel) req.session = sel;
    } else if (f.field === 2) req.signal = toInt32(varintValue(f, 'SendSignalRequest.signal'));
  }
  return req;
}

// --- List, Update, Connect ---------------------------------------------------------------

/** Encodes a `ListResponse`. */
export function encodeListResponse(res: ListResponse): Buffer {
  const w = new ProtoWriter();
  for (const info of res.sessions) {
    const i = new ProtoWriter();
    if (info.command) i.bytes(1, encodeCommandSpec(info.command));
    if (info.pid) i.uint32(2, info.pid);
    if (info.tag !== undefined) i.string(3, info.tag);
    w.bytes(1, i.finish());
  }
  return w.finish();
}

/** Decodes a `ListResponse`. */
export function decodeListResponse(buf: Buffer): ListResponse {
  const res: ListResponse = { sessions: [] };
  for (const f of readFields(buf)) {
    if (f.field !== 1) continue;
    const info: CommandSessionInfo = { pid: 0 };
    for (const g of readFields(lenValue(f, 'ListResponse.sessions'))) {
      if (g.field === 1) info.command = decodeCommandSpec(lenValue(g, 'CommandSessionInfo.command'));
      else if (g.field === 2) info.pid = varintValue(g, 'CommandSessionInfo.pid');
      else if (g.field === 3) info.tag = utf8(g, 'CommandSessionInfo.tag');
    }
    res.sessions.push(info);
  }
  return res;
}

/** Encodes an `UpdateRequest`. */
export function encodeUpdateRequest(req: UpdateRequest): Buffer {
  const w = new ProtoWriter();
  if (req.session) w.bytes(1, encodeSelector(req.session));
  if (req.pty) w.bytes(2, encodePty(req.pty));
  return w.finish();
}

/** Decodes an `UpdateRequest`. */
export function decodeUpdateRequest(buf: Buffer): UpdateRequest {
  const req: UpdateRequest = {};
  for (const f of readFields(buf)) {
    if (f.field === 1) {
      const sel = decodeSelectorField(f, 'UpdateRequest.session');
      if (sel) req.session = sel;
    } else if (f.field === 2) req.pty = decodePty(lenValue(f, 'UpdateRequest.pty'));
  }
  return req;
}

/** Encodes a `ConnectRequest`. */
export function encodeConnectRequest(req: ConnectRequest): Buffer {
  const w = new ProtoWriter();
  if (req.session) w.bytes(1, encodeSelector(req.session));
  return w.finish();
}

/** Decodes a `ConnectRequest`. */
export function decodeConnectRequest(buf: Buffer): ConnectRequest {
  const req: ConnectRequest = {};
  for (const f of readFields(buf)) {
    if (f.field === 1) {
      const sel = decodeSelectorField(f, 'ConnectRequest.session');
      if (sel) req.session = sel;
    }
  }
  return req;
}

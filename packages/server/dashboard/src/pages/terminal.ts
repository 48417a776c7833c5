import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import { api } from '../api.js';
import { h } from '../dom.js';

interface GatewayAuth {
  token: string;
  user_ns: string;
  job_id: string;
}

const STDOUT = 1;
const STDERR = 2;

/**
 * A shell in the sandbox: xterm.js over the gateway's streaming-exec WebSocket with a PTY
 * (docs/streaming-exec.md). The gateway token comes from `POST /sandbox/{id}/auth` and goes in the
 * query (browsers cannot set headers on a WebSocket). The socket is this server's own
 * `/gateway/…/stream`, so it stays same-origin (the CSP's connect-src 'self').
 */
export function renderTerminal(container: HTMLElement, sandboxId: string): () => void {
  const status = h('span', { class: 'muted', id: 'terminal-status' }, 'Connecting…');
  const screen = h('div', { class: 'terminal-screen', id: 'terminal' });
  const reconnect = h('button', { class: 'btn btn-ghost btn-small', type: 'button', hidden: true }, 'Reconnect');
  container.append(h('div', { class: 'terminal-bar' }, status, reconnect), h('div', { class: 'terminal-frame' }, screen));

  const term = new Terminal({
    cursorBlink: true,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace',
    fontSize: 13,
    theme: { background: '#0f172a', foreground: '#e2e8f0', cursor: '#38bdf8' },
    scrollback: 5000,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  fit.fit();

  let ws: WebSocket | null = null;
  let closed = false;
  const send = (message: Record<string, unknown>): void => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  };
  term.onData((data) => send({ type: 'stdin', data }));
  term.onResize(({ rows, cols }) => send({ type: 'resize', rows, cols }));
  const onWindowResize = (): void => fit.fit();
  window.addEventListener('resize', onWindowResize);

  const connect = async (): Promise<void> => {
    reconnect.hidden = true;
    status.textContent = 'Connecting…';
    let auth: GatewayAuth;
    try {
      auth = await api<GatewayAuth>('POST', `/sandbox/${encodeURIComponent(sandboxId)}/auth`);
    } catch (error) {
      status.textContent = `Cannot open a terminal: ${error instanceof Error ? error.message : String(error)}`;
      reconnect.hidden = false;
      return;
    }
    if (closed) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const path = `/gateway/${encodeURIComponent(auth.user_ns)}/${encodeURIComponent(auth.job_id)}/stream?token=${encodeURIComponent(auth.token)}`;
    const socket = new WebSocket(`${scheme}://${location.host}${path}`);
    socket.binaryType = 'arraybuffer';
    ws = socket;
    socket.addEventListener('open', () => {
      socket.send(JSON.stringify({ type: 'start', argv: ['/bin/sh', '-c', 'if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi'], tty: { rows: term.rows, cols: term.cols } }));
    });
    socket.addEventListener('message', (event: MessageEvent) => {
      if (event.data instanceof ArrayBuffer) {
        const bytes = new Uint8Array(event.data);
        if (bytes[0] === STDOUT || bytes[0] === STDERR) term.write(bytes.subarray(1));
        return;
      }
      const message = JSON.parse(String(event.data)) as { type: string; exit_code?: number; message?: string };
      if (message.type === 'started') {
        status.textContent = 'Connected';
        status.className = 'ok';
        term.focus();
      } else if (message.type === 'exit') {
        status.textContent = `Shell exited (${message.exit_code ?? '?'})`;
        status.className = 'muted';
      } else if (message.type === 'error') {
        status.textContent = `Error: ${message.message ?? 'unknown'}`;
        status.className = 'form-error';
      }
    });
    socket.addEventListener('close', () => {
      if (ws === socket) ws = null;
      if (closed) return;
      if (status.textContent === 'Connected' || status.textContent === 'Connecting…') status.textContent = 'Disconnected';
      status.className = 'muted';
      reconnect.hidden = false;
    });
  };
  reconnect.addEventListener('click', () => {
    term.reset();
    void connect();
  });
  void connect();

  return () => {
    closed = true;
    window.removeEventListener('resize', onWindowResize);
    ws?.close();
    term.dispose();
  };
}
